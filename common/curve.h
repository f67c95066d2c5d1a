/* curve.h - CurveZMQ key files: make them, read them, check them, and set a
 * socket up as a CURVE server or client.
 *
 * Files (all text, '#' comments and blank lines ignored):
 *   NAME.key         the secret key: one line of 40 Z85 characters. Must be a
 *                    regular file readable by its owner only (mode 0600 or
 *                    0400): one readable by group or others is refused.
 *   NAME.pub         the public key: one line of 40 Z85 characters.
 *   authorized_keys  the allow-list: one public key a line, optionally followed
 *                    by white space and a name (letters, digits, "._@-", at
 *                    most MLT_CURVE_MAX_NAME bytes) that the daemon logs.
 * Where they live by default (documented, never read implicitly by this
 * module): /etc/mltuner/server.key, server.pub, authorized_keys; a client's
 * own pair plus the server's server.pub.
 *
 * Every size is bounded before use; errors name the file and the line. The
 * module never logs (it is linked into libmltuner). Thread-safe: no state. */
#ifndef MLT_CURVE_H
#define MLT_CURVE_H

#include <stddef.h>

#define MLT_CURVE_Z85      40        /* characters of a Z85-encoded 32-byte key */
#define MLT_CURVE_MAX_NAME 64        /* bytes of a name in authorized_keys */
#define MLT_CURVE_MAX_KEYS 4096      /* entries in authorized_keys */
#define MLT_CURVE_MAX_LINE 256       /* bytes of one line of any key file */
#define MLT_CURVE_MAX_FILE (1 << 20) /* bytes of any key file */

/* A key pair, each Z85 text with its NUL. */
typedef struct mlt_curve_pair {
    char pub[MLT_CURVE_Z85 + 1];
    char sec[MLT_CURVE_Z85 + 1];
} mlt_curve_pair_t;

/* What a client connects with: its own pair and the server's public key. */
typedef struct mlt_curve_client {
    mlt_curve_pair_t me;
    char server[MLT_CURVE_Z85 + 1];
} mlt_curve_client_t;

typedef struct mlt_curve_allow mlt_curve_allow_t;

/* 1 when this libzmq can do CURVE (built with libsodium), else 0. */
int mlt_curve_available(void);

/* Makes a new key pair and writes DIR/NAME.key (mode 0600) and DIR/NAME.pub
 * (mode 0644); an existing file is never overwritten (-EEXIST). NAME is
 * letters, digits and "._-". Returns 0 or -errno with a message naming the
 * file in err. */
int mlt_curve_keygen(const char *dir, const char *name, char *err, size_t errlen);

/* Reads a secret key file and derives its public key. Refuses a file that is
 * not regular, is readable or writable by group or others, is too large, or
 * holds anything but one key. Returns 0 or -errno with "FILE[:LINE]: why". */
int mlt_curve_load_secret(const char *path, mlt_curve_pair_t *out, char *err, size_t errlen);

/* Reads a public key file into out (41 bytes). 0 or -errno as above. */
int mlt_curve_load_public(const char *path, char *out, char *err, size_t errlen);

/* Reads an allow-list (see the file header). Returns 0 with *out (caller owns;
 * free with mlt_curve_allow_destroy) or -errno with "FILE:LINE: why". */
int mlt_curve_allow_load(const char *path, mlt_curve_allow_t **out, char *err, size_t errlen);

/* Adds one key (Z85) with a name to the list. 0, -EINVAL (not a key) or
 * -E2BIG (list full). */
int mlt_curve_allow_add(mlt_curve_allow_t *a, const char *z85, const char *name);

/* The name of a 32-byte binary public key if the list has it ("" for an entry
 * without a name), else NULL. */
const char *mlt_curve_allow_find(const mlt_curve_allow_t *a, const unsigned char key[32]);

/* Number of keys in the list. */
size_t mlt_curve_allow_count(const mlt_curve_allow_t *a);

/* Accepts NULL, clears *ap. */
void mlt_curve_allow_destroy(mlt_curve_allow_t **ap);

/* Makes sock a CURVE server with this pair, for the endpoints it binds from
 * now on (libzmq copies the options at bind). 0 or -errno. */
int mlt_curve_server_socket(void *sock, const mlt_curve_pair_t *me);

/* Makes sock a CURVE client of the server whose public key is keys->server,
 * for the endpoints it connects from now on. 0 or -errno. */
int mlt_curve_client_socket(void *sock, const mlt_curve_client_t *keys);

/* Z85 text of a 32-byte key into out (41 bytes). */
void mlt_curve_z85(const unsigned char key[32], char *out);

#endif
