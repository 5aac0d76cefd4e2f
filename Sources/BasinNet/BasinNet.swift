// BasinNet
