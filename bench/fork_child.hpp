// Starts a child process that runs fn() and exits. The tools fork their peers before creating any transport:
// an Aeron client or driver has threads, and threads do not survive fork().
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>

namespace tensorpool::bench {

template <class Fn>
pid_t fork_child(Fn fn) {
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        // Children spin waiting for their parent's word: one whose parent was killed would spin for ever.
        (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);  // the parent died before the line above
        fn();
        std::fflush(nullptr);
        ::_exit(0);
    }
    return pid;
}

}  // namespace tensorpool::bench
