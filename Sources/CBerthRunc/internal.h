/* Declarations shared by the C files of CBerthRunc (not exported to Swift). */
#ifndef CBERTHRUNC_INTERNAL_H
#define CBERTHRUNC_INTERNAL_H
#include "CBerthRunc.h"
extern char brc_errctx[512];
void brc_set_ctx(const char *what, const char *path);
int brc_mkpath_in_root(int rootfd, const char *path, int as_file);
int brc_prepare_rootfs(const struct brc_plan *plan);
int brc_enter_rootfs(const struct brc_plan *plan);
int brc_finish_rootfs(const struct brc_plan *plan);
#endif
