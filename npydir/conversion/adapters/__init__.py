"""One adapter per format: npydir stores, zarr, HDF5 (through h5py or read directly) and
in-memory mappings, each a source and (except mappings) a destination of the conversion engine."""
