#include "stop_signal.h"

#include <signal.h>
#include <string.h>

/* Written only by the handler, read by the training loop. */
static volatile sig_atomic_t received = 0;

static void on_stop_signal(int number) {
    if (received != 0 && number == SIGINT) {
        /* Ctrl-C pressed again: the user will not wait for the checkpoint,
         * so end the process the way SIGINT normally does. A repeated
         * SIGTERM does not: a scheduler and mpirun may each send one, and
         * the scheduler follows up with SIGKILL anyway. signal() and
         * raise() are async-signal-safe. */
        signal(number, SIG_DFL);
        raise(number);
        return;
    }
    if (received == 0) received = number;
}

int headline_install_stop_handlers(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
    if (sigaction(SIGINT, &action, NULL) != 0) return -1;
    return 0;
}

int headline_stop_signal(void) { return (int)received; }
