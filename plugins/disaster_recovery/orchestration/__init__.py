"""Running a rendered plan: the operators and the I/O around each step."""
