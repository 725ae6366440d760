# walship_test(<binary> <sources> LIBS <libs>): one line per test area.
