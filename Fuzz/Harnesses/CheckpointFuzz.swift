// libFuzzer harness for Checkpoint.decode(_:file:), the reader that
// `train --resume` trusts with a run's weights and position.
//
// Outcomes allowed: a checkpoint, or the reader's own errors (DataError
// for a damaged checkpoint, FileFormatError for a damaged container). A
// mutated file almost never keeps a valid SHA-256, which would stop the
// reader at its first check, so each input is tried twice: as it is, and
// re-signed (its tensors and metadata decoded, the checksum recomputed),
// which lets the fuzzer reach every check after the checksum. A decoded
// checkpoint must encode and decode back to the same values.
import Network
@testable import LauncherCheckpoint

@_cdecl("LLVMFuzzerTestOneInput")
public func checkpointFuzzOneInput(
    _ data: UnsafePointer<UInt8>?, _ size: Int
) -> CInt {
    let bytes = fuzzInput(data, size)
    check(bytes, label: "as given")
    if let signed = resigned(bytes) { check(signed, label: "re-signed") }
    return 0
}

/// The file with its checksum entry replaced by the right one, or nil when
/// the container does not decode.
private func resigned(_ bytes: [UInt8]) -> [UInt8]? {
    guard let tensors = try? SafeTensors.decode(bytes, file: "fuzz"),
        var metadata = try? SafeTensors.decodeMetadata(bytes, file: "fuzz")
    else { return nil }
    metadata["checksum"] = nil
    guard let unsigned = try? SafeTensors.encode(tensors, metadata: metadata)
    else { return nil }
    metadata["checksum"] = "sha256:" + SHA256.hex(unsigned)
    return try? SafeTensors.encode(tensors, metadata: metadata)
}

private func check(_ bytes: [UInt8], label: String) {
    let checkpoint: Checkpoint
    do {
        checkpoint = try Checkpoint.decode(bytes, file: "fuzz-checkpoint")
    } catch is DataError {
        return
    } catch is FileFormatError {
        return
    } catch {
        fuzzFail("\(label): decode threw \(type(of: error)): \(error)")
    }
    let again: Checkpoint
    do {
        again = try Checkpoint.decode(
            try checkpoint.encoded(), file: "roundtrip-checkpoint")
    } catch {
        fuzzFail("\(label): a decoded checkpoint does not read back: \(error)")
    }
    if again.parameters.map(\.bitPattern)
        != checkpoint.parameters.map(\.bitPattern)
        || again.velocity.map(\.bitPattern)
            != checkpoint.velocity.map(\.bitPattern)
        || again.epochsDone != checkpoint.epochsDone
        || again.stepInEpoch != checkpoint.stepInEpoch
        || again.ranks != checkpoint.ranks
        || again.iterations != checkpoint.iterations
        || again.history != checkpoint.history
    {
        fuzzFail("\(label): the round trip changed the checkpoint")
    }
}
