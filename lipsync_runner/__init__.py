"""The headless runner of ComfyUI-LipSync: the pack's node chain on files, without ComfyUI.

    python -m lipsync_runner --video in.mp4 --audio line.wav -o out.mp4
    python -m lipsync_runner demo -o out/demo.mp4

It sits above the nodes (library <- nodes <- runner): it loads the pack and calls its node classes
the way ComfyUI does (:mod:`.cli`). ComfyUI never imports it. Nothing is imported here, so
``lipsync_runner.pack`` can be used on its own by the benches and tools.
"""
