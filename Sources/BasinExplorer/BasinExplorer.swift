// BasinExplorer
