/* replay_main.c - runs a fuzz target's LLVMFuzzerTestOneInput once on each
 * file, without libFuzzer: the corpus replay of `make test` (plain gcc
 * build and ASan+UBSan build, Makefile target fuzz-replay).
 *
 *   fuzz_NAME FILE|DIR...
 *
 * A directory stands for the regular files in it (not recursive), in name
 * order. Each input is read into a buffer of exactly its size, so a read
 * past the end is a heap overflow under ASan. Before each input its path
 * goes to stderr ("replay: PATH"), so the last such line of a crashed run
 * names the reproducer. A broken invariant aborts (the target calls
 * abort()); a sanitizer report ends the process. Exit status: 0 when every
 * input ran, 1 when a file could not be read or no input was given.
 * Prints "N files" on stdout.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads path into a malloc'd buffer of exactly its size (1 byte for an
 * empty file, reported as size 0). Returns it, or NULL with a message. */
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    struct stat st;

    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        goto err;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto err;
    }
    if (st.st_size > 0 &&
        fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fprintf(stderr, "replay: %s: short read\n", path);
        goto err;
    }
    fclose(f);
    *size = (size_t)st.st_size;
    return buf;
err:
    free(buf);
    if (f != NULL) {
        fclose(f);
    }
    return NULL;
}

static int run_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = slurp(path, &size);

    if (data == NULL) {
        return -1;
    }
    fprintf(stderr, "replay: %s\n", path);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs every regular file of dir; adds them to *n. Returns 0 or -1. */
static int run_dir(const char *dir, size_t *n)
{
    struct dirent **ents = NULL;
    int k = scandir(dir, &ents, NULL, by_name);
    int rc = 0;

    if (k < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < k; i++) {
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            *n += rc == 0;
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &n) != 0
                                : run_file(argv[i]) != 0) {
            return 1;
        }
        n += !S_ISDIR(st.st_mode);
    }
    printf("%zu files\n", n);
    return n > 0 ? 0 : 1;
}
