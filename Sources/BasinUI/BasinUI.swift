// BasinUI
