/*
 * procstatus.h - how a child process ended, in words.  One place turns a
 * wait(2) status into the text every program of this project logs and
 * answers with.  Pure functions: no allocation, no logging.
 */
#ifndef ASYA_PROCSTATUS_H
#define ASYA_PROCSTATUS_H

#include <stddef.h>

/*
 * Write the name of signal sig into buf (len bytes): "SIGSEGV", or "SIG42"
 * for a number without a name.  Returns buf.
 */
const char *procstatus_signame(int sig, char *buf, size_t len);

/*
 * Describe how a process ended, from a wait status, as a predicate that
 * follows the process's name: "exited with status 3", "was killed by
 * SIGSEGV (Segmentation fault)", or "ended with wait status 0x137f" for
 * anything else (a stopped process).  Writes into buf (len bytes, always
 * NUL-terminated when len > 0) and returns buf.
 */
const char *procstatus_describe(int status, char *buf, size_t len);

#endif /* ASYA_PROCSTATUS_H */
