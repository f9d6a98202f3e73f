"""New clips from the trained models (`sample`: tokens → frames → upscaled video) and the
gallery that shows them (`gallery`: MP4/GIF, contact sheet, index.html)."""
