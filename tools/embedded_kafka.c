/*
 * embedded_kafka - a Kafka cluster for the local stack and the tests, built on
 * librdkafka's mock cluster (rdkafka_mock.h). It speaks the real Kafka
 * protocol over TCP on 127.0.0.1; librdkafka 2.0.2 picks random ports.
 *
 *   embedded_kafka [--brokers N] [--topic NAME:PARTITIONS]...
 *                  [--bootstraps-file PATH] [--on-usr1 API:ERR:COUNT]...
 *
 * Prints the bootstrap list as the only line on stdout, optionally writes it
 * to PATH (temp file + rename: readers never see a partial file; the file is
 * removed again on exit), then runs until SIGINT or SIGTERM and exits 0.
 *
 * Facts about the 2.0.2 mock (measured): producing to, or requesting metadata
 * for, an unknown topic auto-creates it with 4 partitions; that default cannot
 * be changed through the public API, so there is no --default-partitions.
 * Consumers (allow.auto.create.topics=false) do not auto-create.
 * --on-usr1 arms a protocol fault for the tests (the mock's request-error
 * injection, which a real broker cannot do on demand): each SIGUSR1 makes
 * the next COUNT requests of Kafka API key API (0 Produce, 22
 * InitProducerId, ...) fail with error code ERR (e.g. 47
 * INVALID_PRODUCER_EPOCH, which makes an idempotent producer fail for
 * good). One line on stderr per signal says what was armed.
 * Nothing here may be relied on by the processor: production is Apache Kafka.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 256
#define MAX_BROKERS 16
#define MAX_PARTITIONS 100000
#define MAX_FAULTS 8

struct fault_spec {
    int api, err, count;
};

struct topic_spec {
    char *name;
    int partitions;
};

static void usage(FILE *out)
{
    fputs(
        "usage: embedded_kafka [options]\n"
        "  --brokers N              number of mock brokers (default 1, max "
        "16)\n"
        "  --topic NAME:PARTITIONS  create a topic (repeatable); replication\n"
        "                           factor is min(3, brokers)\n"
        "  --bootstraps-file PATH   also write the bootstrap list to PATH\n"
        "                           (atomically; removed on exit)\n"
        "  --on-usr1 API:ERR:COUNT  on each SIGUSR1, fail the next COUNT\n"
        "                           requests of API key API with error ERR\n"
        "                           (repeatable; a test's fault injection)\n"
        "  --help                   this text\n"
        "Prints the bootstrap list (127.0.0.1:port,...) as the single line on\n"
        "stdout, then serves until SIGINT/SIGTERM and exits 0.\n"
        "Unknown topics are auto-created with 4 partitions when a producer or\n"
        "a metadata request asks for them (fixed in librdkafka 2.0.2's "
        "mock).\n",
        out);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int write_file_atomic(const char *path, const char *content)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    FILE *f;
    int ok;
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "embedded_kafka: cannot write %s: %s\n", tmp,
                strerror(errno));
        free(tmp);
        return -1;
    }
    ok = fprintf(f, "%s\n", content) >= 0;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "embedded_kafka: cannot write %s: %s\n", path,
                strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct topic_spec topics[MAX_TOPICS];
    int ntopics = 0;
    int brokers = 1;
    const char *bootstraps_file = NULL;
    struct fault_spec faults[MAX_FAULTS];
    int nfaults = 0;
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstraps;
    sigset_t sigs;
    int sig = 0;
    int rc = 0;
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--brokers") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, MAX_BROKERS, &brokers) != 0) {
                fprintf(stderr, "embedded_kafka: bad --brokers '%s' (1..%d)\n",
                        argv[i], MAX_BROKERS);
                return 2;
            }
        } else if (!strcmp(a, "--topic") && i + 1 < argc) {
            const char *spec = argv[++i];
            const char *colon = strrchr(spec, ':');
            if (ntopics == MAX_TOPICS) {
                fprintf(stderr, "embedded_kafka: too many topics (max %d)\n",
                        MAX_TOPICS);
                return 2;
            }
            if (!colon || colon == spec ||
                parse_int(colon + 1, 1, MAX_PARTITIONS,
                          &topics[ntopics].partitions) != 0) {
                fprintf(
                    stderr,
                    "embedded_kafka: bad --topic '%s' (want NAME:PARTITIONS, "
                    "1..%d partitions)\n",
                    spec, MAX_PARTITIONS);
                return 2;
            }
            /* Copy the name: editing argv in place would change ps output. */
            topics[ntopics].name = strndup(spec, (size_t)(colon - spec));
            if (!topics[ntopics].name)
                return 1;
            ntopics++;
        } else if (!strcmp(a, "--bootstraps-file") && i + 1 < argc) {
            bootstraps_file = argv[++i];
        } else if (!strcmp(a, "--on-usr1") && i + 1 < argc) {
            struct fault_spec *f = &faults[nfaults];
            char tail;
            if (nfaults == MAX_FAULTS ||
                sscanf(argv[++i], "%d:%d:%d%c", &f->api, &f->err, &f->count,
                       &tail) != 3 ||
                f->api < 0 || f->api > 1000 || f->count < 1 ||
                f->count > 1000000) {
                fprintf(stderr,
                        "embedded_kafka: bad --on-usr1 '%s' (want "
                        "API:ERR:COUNT, at most %d)\n",
                        argv[i], MAX_FAULTS);
                return 2;
            }
            nfaults++;
        } else {
            fprintf(stderr,
                    "embedded_kafka: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* Block the stop signals before librdkafka starts its threads so that
     * every thread inherits the mask and sigwait() below receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        fprintf(stderr, "embedded_kafka: pthread_sigmask failed\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The rd_kafka_t only hosts the mock cluster; it never connects anywhere.
     * log_level 4 hides the notice "No bootstrap.servers configured". */
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "embedded_kafka", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "embedded_kafka: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "embedded_kafka: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "embedded_kafka: cannot create mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (i = 0; i < ntopics; i++) {
        int rf = brokers < 3 ? brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            mc, topics[i].name, topics[i].partitions, rf);
        if (err) {
            fprintf(stderr, "embedded_kafka: cannot create topic %s: %s\n",
                    topics[i].name, rd_kafka_err2str(err));
            rc = 1;
            goto out;
        }
    }
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);

    {
        /* One line, written at once (stderr is unbuffered). */
        char line[4096];
        size_t len = (size_t)snprintf(
            line, sizeof(line),
            "embedded_kafka: librdkafka %s mock cluster, %d broker(s) "
            "at %s, %d topic(s):",
            rd_kafka_version_str(), brokers, bootstraps, ntopics);
        for (i = 0; i < ntopics && len < sizeof(line); i++)
            len += (size_t)snprintf(line + len, sizeof(line) - len, " %s:%d",
                                    topics[i].name, topics[i].partitions);
        fprintf(stderr, "%.4000s\n", line);
    }

    if (bootstraps_file &&
        write_file_atomic(bootstraps_file, bootstraps) != 0) {
        rc = 1;
        goto out;
    }
    if (printf("%s\n", bootstraps) < 0 || fflush(stdout) != 0) {
        /* A closed stdout is not fatal when the file is used instead. */
        if (!bootstraps_file) {
            fprintf(stderr, "embedded_kafka: cannot write stdout\n");
            rc = 1;
            goto out;
        }
    }

    while (sig != SIGINT && sig != SIGTERM) {
        if (sigwait(&sigs, &sig) != 0)
            sig = 0;
        for (i = 0; sig == SIGUSR1 && i < nfaults; i++) {
            rd_kafka_resp_err_t errs[64];
            size_t left = (size_t)faults[i].count;
            for (size_t k = 0; k < 64; k++)
                errs[k] = (rd_kafka_resp_err_t)faults[i].err;
            while (left > 0) { /* the array call takes a bounded count */
                size_t n = left < 64 ? left : 64;
                rd_kafka_mock_push_request_errors_array(
                    mc, (int16_t)faults[i].api, n, errs);
                left -= n;
            }
            fprintf(stderr,
                    "embedded_kafka: SIGUSR1: the next %d request(s) of API "
                    "%d fail with %s\n",
                    faults[i].count, faults[i].api,
                    rd_kafka_err2name((rd_kafka_resp_err_t)faults[i].err));
        }
    }
    fprintf(stderr, "embedded_kafka: %s, shutting down\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");

out:
    if (bootstraps_file && rc == 0)
        unlink(bootstraps_file);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    for (i = 0; i < ntopics; i++)
        free(topics[i].name);
    return rc;
}
