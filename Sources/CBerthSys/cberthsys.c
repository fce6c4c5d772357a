// Small Linux system-call wrappers that Swift's Glibc module does not import; all inline in the header.
#include "CBerthSys.h"
