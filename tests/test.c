// test.c — the harness behind test.h.
#include "test.h"

#include <sys/stat.h>

test_state test_g;

void test_init(int argc, char **argv) {
    (void)argc;
    const char *b = argv && argv[0] ? strrchr(argv[0], '/') : NULL;
    test_g.binary = b ? b + 1 : (argv && argv[0] ? argv[0] : "test");
}

void test_run_one(const char *name, void (*fn)(void)) {
    test_g.cur_name = name;
    test_g.cur_failures = 0;
    test_g.cur_skipped = false;
    fn();
    if (test_g.cur_failures) {
        test_g.failed++;
        fprintf(stderr, "FAIL %s (%d failed checks)\n", name, test_g.cur_failures);
    } else if (test_g.cur_skipped) {
        test_g.skipped++;
    } else {
        test_g.passed++;
        fprintf(stderr, "ok   %s\n", name);
    }
}

void test_skip(const char *why) {
    if (!test_g.cur_skipped) fprintf(stderr, "SKIP %s: %s\n", test_g.cur_name, why);
    test_g.cur_skipped = true;
}

int test_finish(void) {
    printf("%s: %d passed, %d failed, %d skipped\n", test_g.binary ? test_g.binary : "test",
           test_g.passed, test_g.failed, test_g.skipped);
    return test_g.failed ? 1 : 0;
}

const char *test_shared_dir(void) {
    static char dir[1024];
    const char *env = getenv("SIM_SHARED");
    snprintf(dir, sizeof dir, "%s", env && *env ? env : "../shared");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return dir;
}

const char *test_shared_path(char *buf, size_t cap, const char *rel) {
    const char *dir = test_shared_dir();
    if (!dir) {
        test_skip("../shared is absent (set SIM_SHARED to its path)");
        return NULL;
    }
    snprintf(buf, cap, "%s/%s", dir, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        char why[1200];
        snprintf(why, sizeof why, "%s is absent", buf);
        test_skip(why);
        return NULL;
    }
    return buf;
}
