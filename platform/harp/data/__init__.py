"""The video data pipeline: synthetic demo data, indexing to a Parquet manifest, sampling,
decoding (decord, PyAV fallback), clip-consistent transforms, and the torch Dataset/DataLoader.

Submodules are imported on use (``harp.data.manifest``, ``harp.data.loader``, ...) so that
``import harp.data`` stays cheap.
"""
