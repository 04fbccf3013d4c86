// Header-only: see include/CVirtioShim.h
