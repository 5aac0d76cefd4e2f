// BasinIO
