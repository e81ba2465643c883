"""The runner's neural generators: ``--musetalk DIR`` and ``--latentsync DIR`` (with ``--vae FILE`` and
LatentSync's options), checked and loaded before any decoding (:func:`.cli.main` calls them)."""

from __future__ import annotations

import os
from pathlib import Path

from ..lipsync_models.errors import InputError

LATENTSYNC_OPTIONS = (("--steps", "steps", 20, "denoising steps per 16-frame chunk"),
                      ("--seed", "seed", 1247, "the seed of the starting noise"),
                      ("--feature-reuse", "feature_reuse", 0, "0 = off, 3 = the reference's DeepCache"))
"""The runner's LatentSync options: flag, LipSyncInference widget (bounds), default, what it is."""


def check_latentsync_args(args, nodes, bounds) -> None:
    """--steps, --seed, --feature-reuse within the node's bounds; refused without --latentsync."""
    if not args.latentsync:
        given = [flag for flag, name, default, _ in LATENTSYNC_OPTIONS if getattr(args, name) != default]
        given += ["--latentsync-version"] if args.latentsync_version else []
        if given:
            raise InputError(f"{given[0]} is an option of LatentSync: give --latentsync DIR too, or leave it out.")
        return
    for flag, name, _, what in LATENTSYNC_OPTIONS:
        lo, hi = bounds(nodes["LipSyncInference"], name)
        if not lo <= getattr(args, name) <= hi:
            raise InputError(f"{flag} {getattr(args, name)}: must be between {lo:.0f} and {hi:.0f} ({what}).")


def musetalk(args, comfy, builtin: str):
    """--musetalk DIR (--vae FILE): every file checked and the models loaded (once, for every clip)
    before anything is decoded. CheckpointError names the missing or mismatched file."""
    if not args.musetalk:
        raise InputError("--vae is the VAE of a MuseTalk or LatentSync folder: give --musetalk DIR or "
                         "--latentsync DIR too.")
    if args.model != builtin:
        raise InputError(f"--model {args.model!r} and --musetalk: give one generator.")
    from ..lipsync_models.backends import musetalk, musetalk_files

    files = musetalk_files.find_files(args.musetalk, vae=args.vae, who="--musetalk")
    musetalk.cached_models(files, comfy.compute_device(), who="--musetalk")
    return files


def latentsync(args, comfy, builtin: str):
    """--latentsync DIR (--vae FILE, --latentsync-version, --steps, --seed, --feature-reuse; the options were
    checked by :func:`.cli.check_args`): every file checked and the models loaded before anything is decoded."""
    if args.musetalk:
        raise InputError("--latentsync and --musetalk: give one generator.")
    if args.model != builtin:
        raise InputError(f"--model {args.model!r} and --latentsync: give one generator.")
    from ..lipsync_models.backends import latentsync, latentsync_files, latentsync_stream

    if args.vae and not os.path.isfile(args.vae):
        raise InputError(f"--vae {args.vae}: no such file; give the sd-vae-ft-mse weights as one file "
                         "(e.g. vae-ft-mse-840000-ema-pruned.safetensors) or leave --vae out.")
    vae = args.vae or comfy.sd_vae_file()
    if vae is None and not os.path.isdir(os.path.join(args.latentsync, "sd-vae")):
        raise InputError(f"--latentsync {args.latentsync}: no sd-vae/ there and no sd-vae-ft-mse in models/vae: "
                         "give --vae FILE (e.g. vae-ft-mse-840000-ema-pruned.safetensors).")
    files = latentsync_files.find_files(args.latentsync, vae=vae, who="--latentsync")
    version = args.latentsync_version or ("1.5" if Path(args.latentsync).resolve().name == "1.5" else "1.6")
    latentsync.cached_models(files, comfy.compute_device(), who="--latentsync")
    return latentsync_stream.LatentSyncJob(files, version, args.steps, args.seed, args.feature_reuse)
