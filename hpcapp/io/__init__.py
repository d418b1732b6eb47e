"""Scientific-data input and output: dimension names and coordinates, CF decoding, netCDF layout."""
