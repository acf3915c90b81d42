#ifndef HEADLINE_STOP_SIGNAL_H
#define HEADLINE_STOP_SIGNAL_H

/*
 * SIGTERM and SIGINT handlers for a graceful stop.
 *
 * They live in C because a signal handler may touch nothing but a
 * `volatile sig_atomic_t` and async-signal-safe calls; Swift gives no such
 * guarantee for its globals (their first access may run an initialiser).
 * The training loop polls the flag once per step and does all the real
 * work (agreeing with the other ranks, writing a checkpoint) outside the
 * handler.
 */

/* Installs the handlers for SIGTERM and SIGINT (SA_RESTART, so a system
 * call that a signal interrupts is resumed rather than failing with EINTR).
 * Returns 0, or -1 with errno set when sigaction fails. */
int headline_install_stop_handlers(void);

/* The number of the first SIGTERM or SIGINT received, or 0. A second
 * SIGINT ends the process at once; a second SIGTERM is ignored. */
int headline_stop_signal(void);

#endif
