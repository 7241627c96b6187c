"""One delivery from receipt to settlement (the map is in :mod:`workers`)."""
