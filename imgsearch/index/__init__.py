"""Index storage (HDF5, versioned, atomic writes) and search structures (FAISS binary indexes)."""
