"""Rendering avatar vectors into folders: the writer (``job``) and the reader (``folder``)."""
from .folder import RenderFolder, image_path, is_render_folder, mask_path
from .job import RenderConfig, RenderSummary, render_folder

__all__ = ["RenderConfig", "RenderFolder", "RenderSummary", "image_path", "is_render_folder", "mask_path", "render_folder"]
