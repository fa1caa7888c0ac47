/* calls: function-call-heavy kernel C, built twice (-O2 and -O0): a hash
 * over a buffer, a linked list of named structs walked and searched by key
 * and by name, xv6's strlen/strncmp/memcmp/safestrcpy, a small recursive
 * fib and an inlinable helper mixing it all into one checksum.
 * Result: that checksum (modelled in tests/test_bench_kernels.py). */
#include "kbench.h"

#define NOINLINE __attribute__((noinline))
#define NNODES 48
#define NAMELEN 16

const u32 workload_default_iters = 100;

struct node {
    struct node *next;
    u32 key;
    u32 val;
    char name[NAMELEN];
};

static struct node nodes[NNODES];
static struct node *head;
static u8 buf[256];
static const char *const words[16] = {
    "acquire", "release", "pushcli", "popcli", "mycpu", "kalloc", "kfree", "mappages",
    "walkpgdir", "copyuvm", "freevm", "memmove", "sched", "yield", "sleep", "wakeup",
};

/* ---------------------------------------------------- xv6's string.c */
NOINLINE int strlen(const char *s)
{
    int n;
    for (n = 0; s[n]; n++)
        ;
    return n;
}

NOINLINE int strncmp(const char *p, const char *q, u32 n)
{
    while (n > 0 && *p && *p == *q)
        n--, p++, q++;
    if (n == 0)
        return 0;
    return (u8)*p - (u8)*q;
}

NOINLINE int memcmp(const void *v1, const void *v2, u32 n)
{
    const u8 *s1 = v1, *s2 = v2;
    while (n-- > 0) {
        if (*s1 != *s2)
            return *s1 - *s2;
        s1++, s2++;
    }
    return 0;
}

NOINLINE char *safestrcpy(char *s, const char *t, int n)
{
    char *os = s;
    if (n <= 0)
        return os;
    while (--n > 0 && (*s++ = *t++) != 0)
        ;
    *s = 0;
    return os;
}

/* ------------------------------------------------------------ helpers */
static u32 mix(u32 a, u32 b) { return (a ^ (b << 5)) + (b >> 3); }

NOINLINE u32 hash(const u8 *p, u32 n)                  /* FNV-1a */
{
    u32 h = 2166136261u;
    while (n--) {
        h ^= *p++;
        h *= 16777619u;
    }
    return h;
}

NOINLINE u32 fib(u32 n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

NOINLINE struct node *list_find(struct node *h, u32 key)
{
    for (; h; h = h->next)
        if (h->key == key)
            return h;
    return 0;
}

NOINLINE u32 list_sum(struct node *h)
{
    u32 s = 0;
    for (; h; h = h->next)
        s = mix(s, h->val);
    return s;
}

NOINLINE int lookup(const char *name)
{
    for (struct node *n = head; n; n = n->next)
        if (strncmp(n->name, name, NAMELEN) == 0)
            return (int)n->key;
    return -1;
}

/* name = word + suffix letter */
NOINLINE void make_name(char *dst, const char *word, int suffix)
{
    int n = strlen(word);
    safestrcpy(dst, word, NAMELEN);
    dst[n] = (char)('a' + suffix);
    dst[n + 1] = 0;
}

void workload_setup(void)
{
    for (u32 i = 0; i < NNODES; i++) {
        nodes[i].key = i;
        nodes[i].val = (i * 2654435761u) ^ 0x5bd1e995u;
        make_name(nodes[i].name, words[i % 16], (int)(i / 16));
    }
    head = &nodes[0];                             /* list order: 0, 7, 14, ... (i * 7 mod 48) */
    for (u32 k = 0; k < NNODES; k++)
        nodes[(k * 7) % NNODES].next = k + 1 < NNODES ? &nodes[((k + 1) * 7) % NNODES] : 0;
    for (u32 i = 0; i < sizeof buf; i++)
        buf[i] = (u8)(i * 7 + 3);
}

u32 workload_run(u32 iters)
{
    u32 s = 0;
    char q[NAMELEN];
    for (u32 r = 0; r < iters; r++) {
        s = mix(s, hash(buf, sizeof buf) ^ r);
        s = mix(s, list_sum(head));
        s = mix(s, list_find(head, (r * 5) % NNODES)->val);
        for (int w = 0; w < 16; w++) {
            s = mix(s, (u32)strlen(words[w]));
            make_name(q, words[w], (int)(r % 3));
            s = mix(s, (u32)lookup(q));
            s = mix(s, (u32)strncmp(words[w], words[(w + 1) % 16], 3));
        }
        s = mix(s, (u32)memcmp(buf + (r & 63), buf + ((r * 3) & 63), 32));
        s = mix(s, fib(10 + (r & 1)));
    }
    return s;
}
