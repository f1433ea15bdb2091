// fuzz_pack.c — libFuzzer target for zip scenario packs: the input is
// written to a scratch file, opened with pack_open and every file entry
// under the pack's root is read in full.
//   - never crash, hang or leak, whatever the central directory claims;
//   - an entry read in full never yields more bytes than it declares, and
//     never more than the limit asked for.
// Build and run: make fuzz && build/fuzz/fuzz_pack -max_total_time=60 tests/fuzz/corpus-pack
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "story/pack.h"

static char g_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_path[0]) {
        snprintf(g_path, sizeof g_path, "/tmp/fuzz_pack_%d.zip", (int)getpid());
    }
    sim_err err;
    if (file_write_all(g_path, data, size, &err) != SIM_OK) abort();
    pack *p;
    if (pack_open(&p, g_path, &err) != SIM_OK) {
        if (p != NULL || !err.msg[0]) abort();
        return 0;
    }
    const char *pre = pack_prefix(p);
    size_t pl = strlen(pre);
    for (int i = 0; i < pack_n_entries(p); i++) {
        bool dir;
        const char *name = pack_entry_name(p, i, &dir);
        if (dir || strncmp(name, pre, pl) != 0) continue;
        uint64_t declared;
        if (pack_stat(p, name + pl, &declared, NULL, &err) != SIM_OK) abort(); // a listed entry is there
        char *buf;
        size_t len;
        const size_t limit = 1 << 20;
        if (pack_read(p, name + pl, limit, &buf, &len, NULL, &err) == SIM_OK) {
            if (len > declared || len > limit || buf[len] != 0) abort();
            mem_free(buf);
        } else if (!err.msg[0]) {
            abort();
        }
    }
    pack_close(p);
    return 0;
}
