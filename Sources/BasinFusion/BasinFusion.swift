// BasinFusion
