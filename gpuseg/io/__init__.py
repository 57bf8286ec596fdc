"""Reading images and points (headers first, bounded, regular files only; windows of large images; GPU
decoding) and writing outputs all together or not at all."""
