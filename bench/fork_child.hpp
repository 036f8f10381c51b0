// Starts a child process that runs fn() and exits. The tools fork their peers before creating any transport:
// an Aeron client or driver has threads, and threads do not survive fork().
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

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

// Waits up to timeout_ms for a child to exit, then kills it (SIGKILL) and reaps it. True if it exited by itself
// with status 0.
inline bool reap_child(pid_t pid, int timeout_ms) {
    int status = 0;
    for (int i = 0; i < timeout_ms; ++i) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (r < 0) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return false;
}

}  // namespace tensorpool::bench
