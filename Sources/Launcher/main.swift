import Collective
import Foundation

/// The command-line trainer: `headline-trainer COMMAND [options]`.
let usage = """
    usage: headline-trainer COMMAND [options]

    commands:
      train      train the model on a prepared folder (or the bundled data)
      predict    write both outputs' probabilities for each row
      evaluate   print losses, accuracy and ROC AUC on a labelled folder
      prepare    import a CSV of headlines into a training folder

    Run 'headline-trainer COMMAND --help' for a command's options.
    """

/// The rank of this process for deciding who prints, without starting MPI
/// when it has not started yet.
func printingRank() -> Int {
    let env = ProcessInfo.processInfo.environment
    for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"] {
        if let value = env[key].flatMap(Int.init) { return value }
    }
    return 0
}

func printError(_ text: String) {
    FileHandle.standardError.write(
        Data("headline-trainer: error: \(text)\n".utf8))
}

/// A problem that does not end the run, on standard error.
func printWarning(_ text: String) {
    FileHandle.standardError.write(
        Data("headline-trainer: warning: \(text)\n".utf8))
}

func runCommand(_ arguments: [String]) -> Int32 {
    guard let command = arguments.first else {
        printError("no command given\n\n" + usage)
        return 2
    }
    let rest = Array(arguments.dropFirst())
    do {
        switch command {
        case "train": return try TrainCommand.run(rest)
        case "predict": return try PredictCommand.run(rest)
        case "evaluate": return try EvaluateCommand.run(rest)
        case "prepare": return try runPrepare(rest)
        case "--help", "-h", "help":
            print(usage)
            return 0
        default:
            throw UsageError("unknown command '\(command)'")
        }
    } catch let error as UsageError {
        // Every rank parses the same command line, so only one speaks.
        if printingRank() == 0 {
            let known = ["train", "predict", "evaluate", "prepare"]
            let help =
                known.contains(command)
                ? "headline-trainer \(command) --help"
                : "headline-trainer --help"
            printError("\(error)\nRun '\(help)'.")
        }
        return 2
    } catch let error as AgreedFailure {
        // All ranks know; the failing rank alone prints its own message.
        if let local = error.local {
            let world = try? Communicator.world()
            // A non-finite loss or gradient is found in the values summed
            // over all ranks: naming the rank that reports it would mislead.
            let prefix =
                (world?.size ?? 1) > 1 && !(local is TrainingError)
                ? "rank \(error.rank): " : ""
            printError(prefix + "\(local)")
        }
        return 1
    } catch {
        // A failure on this rank alone (a file it could not write, say):
        // the others may be waiting in a collective, so end the whole job.
        let world = try? Communicator.world()
        if let world, world.isDistributed, world.size > 1 {
            printError("rank \(world.rank): \(error)")
            world.abort(code: 1)
        }
        printError("\(error)")
        return 1
    }
}

let status = runCommand(Array(CommandLine.arguments.dropFirst()))
Communicator.finalize()
exit(status)
