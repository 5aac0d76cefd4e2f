// BasinCurses
