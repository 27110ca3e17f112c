"""The video data pipeline: synthetic demo data, indexing to a Parquet manifest, sampling,
decoding (PyAV; decord selectable, with PyAV as its fallback), clip-consistent transforms, and the torch Dataset/DataLoader.

Submodules are imported on use (``harp.data.manifest``, ``harp.data.loader``, ...) so that
``import harp.data`` stays cheap.
"""
