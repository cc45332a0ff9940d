HDDC = None
