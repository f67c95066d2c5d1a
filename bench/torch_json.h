/* torch_json.h - the small JSON reader bench/gpu_step uses for the results
 * bench/torch_gpu_peer.py writes (torch.json): the document's leaves,
 * flattened into paths ("mlp.128.graph" -> 0.128). Not a general JSON
 * parser: \uXXXX escapes read as '?', strings and paths are truncated, at
 * most TORCH_JSON_MAX_LEAVES leaves are kept, the file's first 64 KiB read. */
#ifndef MLT_BENCH_TORCH_JSON_H
#define MLT_BENCH_TORCH_JSON_H

#include <stddef.h>

/* The leaves of a JSON document, flattened: "mlp.128.graph" -> 0.128. */
#define TORCH_JSON_MAX_LEAVES 128
typedef struct torch_json_leaf {
    char path[96];
    double num;    /* NaN for strings, null and non-numbers */
    char str[128]; /* string leaves */
} torch_json_leaf_t;

/* Reads path's leaves into leaves (TORCH_JSON_MAX_LEAVES); their number, or -1
 * with why. Not thread-safe (one static read buffer). */
int torch_json_load(const char *path, torch_json_leaf_t *leaves, char *why, size_t whylen);

/* The leaf at path among the first n, or NULL. */
const torch_json_leaf_t *torch_json_get(const torch_json_leaf_t *leaves, int n, const char *path);

/* The number at path, or NaN (no such leaf, or not a number). */
double torch_json_num(const torch_json_leaf_t *leaves, int n, const char *path);

#endif
