print("berth-shim: not yet implemented")
