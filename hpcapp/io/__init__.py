"""Reading HDF5 inputs: finding the dataset and checking HDF5 can read its values."""
