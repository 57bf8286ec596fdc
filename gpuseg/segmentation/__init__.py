"""One image: features -> DBSCAN -> labels -> post-processing -> report, pictures and outputs."""
