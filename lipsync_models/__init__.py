"""ComfyUI-LipSync's library: torch (+ numpy, einops; matplotlib for the previews) only; it never imports ComfyUI.

Modules are imported on demand (``from lipsync_models import audio``) so that importing the
package stays cheap.
"""
