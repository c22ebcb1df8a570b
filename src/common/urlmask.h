/*
 * urlmask.h - a URL with its password hidden, for logs and error text
 * (amqp://, amqps://, postgres://: anything shaped scheme://user:pass@host).
 */
#ifndef ASYA_URLMASK_H
#define ASYA_URLMASK_H

#include <stddef.h>

/* Copy url into buf (buflen bytes, always NUL-terminated when buflen > 0)
 * with the password replaced by "***".  When the URL is malformed it masks
 * too much rather than too little: a password never reaches buf. */
void urlmask_password(const char *url, char *buf, size_t buflen);

#endif /* ASYA_URLMASK_H */
