/* Unit tests for text.c: the line reader of JSON-lines input
 * (text_next_line: empty lines skipped but counted, CR/LF cut, the last
 * line without an end, a read error told apart from the end) and the
 * thousands separators of the summaries (text_thousands). The JSON
 * writer and the UTF-8 check are tested through their users (test_alert,
 * test_txn, test_log).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"

/* A stream that reads text (len bytes) from memory. */
static FILE *mem(const char *text, size_t len)
{
    FILE *f = fmemopen((void *)text, len, "r");
    assert_non_null(f);
    return f;
}

static void test_next_line(void **state)
{
    (void)state;
    static const char text[] = "\n"             /* 1: empty */
                               "first\r\n"      /* 2 */
                               "\r\n"           /* 3: empty once cut */
                               "\r\r\n"         /* 4: the same */
                               "a\0b\n"         /* 5: a NUL is data */
                               "two\r\r\n"      /* 6: every CR/LF cut */
                               "\n\n"           /* 7, 8 */
                               "last";          /* 9: no line end */
    FILE *f = mem(text, sizeof(text) - 1);
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0;

    assert_int_equal(text_next_line(f, &line, &cap, &lineno), 5);
    assert_string_equal(line, "first");
    assert_int_equal(lineno, 2);
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), 3);
    assert_memory_equal(line, "a\0b", 4);
    assert_int_equal(lineno, 5);
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), 3);
    assert_string_equal(line, "two");
    assert_int_equal(lineno, 6);
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), 4);
    assert_string_equal(line, "last");
    assert_int_equal(lineno, 9);
    /* the end: -1, and it is no error */
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), -1);
    assert_int_equal(lineno, 9);
    assert_int_equal(ferror(f), 0);
    fclose(f);

    /* only empty lines: -1 at once, each line counted */
    f = mem("\r\n\n\r", 4);
    lineno = 0;
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), -1);
    assert_int_equal(lineno, 3);
    fclose(f);
    free(line);
}

/* A read error ends the lines too; ferror() tells it from the end. */
static void test_next_line_read_error(void **state)
{
    (void)state;
    char dir[] = "/tmp/cw-text-XXXXXX";
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0;

    assert_non_null(mkdtemp(dir));
    FILE *f = fopen(dir, "r"); /* a directory opens, and fails to read */
    assert_non_null(f);
    assert_int_equal(text_next_line(f, &line, &cap, &lineno), -1);
    assert_int_equal(lineno, 0);
    assert_int_not_equal(ferror(f), 0);
    fclose(f);
    free(line);
    assert_int_equal(remove(dir), 0);
}

static void test_thousands(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {999, "999"},
        {1000, "1,000"},
        {12345, "12,345"},
        {100000, "100,000"},
        {1234567, "1,234,567"},
        {UINT64_MAX, "18,446,744,073,709,551,615"},
    };
    char buf[32];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 'x', sizeof(buf));
        text_thousands(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].s);
    }
    /* a shorter buffer: a prefix of the number, NUL-terminated, nothing
     * written at or past len */
    for (size_t len = 1; len <= 26; len++) {
        memset(buf, 'x', sizeof(buf));
        text_thousands(UINT64_MAX, buf, len);
        assert_true(strlen(buf) < len);
        assert_memory_equal(buf, "18,446,744,073,709,551,615", strlen(buf));
        assert_int_equal(buf[len], 'x');
    }
    /* len 0 writes nothing */
    buf[0] = 'x';
    text_thousands(1234567, buf, 0);
    assert_int_equal(buf[0], 'x');
}

/* text_errf with no buffer or a zero-length one writes nothing. */
static void test_errf_no_room(void **state)
{
    (void)state;
    char buf[8] = "keep";
    text_errf(buf, 0, "error %d", 1);
    assert_string_equal(buf, "keep");
    text_errf(NULL, 8, "error %d", 2);
    text_errf(buf, sizeof(buf), "error %d", 3);
    assert_string_equal(buf, "error 3");
    text_errf(buf, sizeof(buf), "a longer error");
    assert_string_equal(buf, "a longe");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_line),
        cmocka_unit_test(test_next_line_read_error),
        cmocka_unit_test(test_thousands),
        cmocka_unit_test(test_errf_no_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
