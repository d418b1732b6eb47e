"""Reading inputs and writing outputs: finding datasets, filters, dimensions, CF, netCDF."""
