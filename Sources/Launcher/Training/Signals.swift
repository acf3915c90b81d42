import CStopSignal
import Foundation

/// A graceful stop on SIGTERM or SIGINT, which schedulers send some time
/// before they kill a job (and Ctrl-C sends).
///
/// The handlers (in C, see `stop_signal.h`) only record the signal. The
/// training loop reads it once per step and the ranks agree on it in the
/// step's first all-reduce (`Communicator.agreeingOnStep`), so all of them
/// stop before the same step; rank 0 writes a checkpoint and every rank
/// exits with 128 + the signal number: 143 for SIGTERM, 130 for SIGINT.
/// A second SIGINT (Ctrl-C again) ends the process at once, as if no
/// handler were there; a second SIGTERM changes nothing, since a scheduler
/// and mpirun may each send one.
///
/// Under OpenMPI's mpirun, a SIGTERM or SIGINT to mpirun reaches every
/// rank as SIGTERM, followed by SIGKILL one second later
/// (`--mca odls_base_sigkill_timeout N` sets the grace in seconds); a
/// signal to one rank reaches the others through the agreement.
enum StopSignals {
    /// Installs the handlers; until then the signals end the process.
    static func install() throws {
        guard headline_install_stop_handlers() == 0 else {
            throw DataError(
                "cannot install the SIGTERM/SIGINT handlers: "
                    + String(cString: strerror(errno)))
        }
    }

    /// The signal received so far, or 0.
    static var received: Int32 { Int32(headline_stop_signal()) }

    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        default: return "signal \(signal)"
        }
    }

    /// The shell's convention for a process ended by `signal`.
    static func exitStatus(_ signal: Int32) -> Int32 { 128 + signal }
}
