"""Many images and large ones: one runner over many images (a folder pipeline in threads, or tasks on a Dask
cluster), stacked images in one pass, and images larger than memory in chunks."""
