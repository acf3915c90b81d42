// libFuzzer harness for SafeTensors.decode(_:file:) -- the container of
// the checkpoint files too (see Fuzz/README.md for the checkpoint slot).
//
// Outcomes allowed: the tensors, or a FileFormatError. A decoded file must
// survive SafeTensors.encode (with its __metadata__) and decode again with
// the same names, order, arrays (bit for bit) and metadata.
@testable import Network

@_cdecl("LLVMFuzzerTestOneInput")
public func safeTensorsFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let tensors: [(name: String, array: HostArray)]
    do {
        tensors = try SafeTensors.decode(bytes, file: "fuzz.safetensors")
    } catch is FileFormatError {
        return 0
    } catch {
        fuzzFail("SafeTensors.decode threw \(type(of: error)), not FileFormatError: \(error)")
    }
    let metadata: [String: String]
    do {
        metadata = try SafeTensors.readHeader(
            from: MemorySource(bytes: bytes, label: "fuzz.safetensors")).metadata
    } catch {
        fuzzFail("the header of a file that decoded fails on its own: \(error)")
    }
    let encoded: [UInt8]
    do {
        encoded = try SafeTensors.encode(tensors, metadata: metadata)
    } catch {
        fuzzFail("SafeTensors.encode refused decoded tensors: \(error)")
    }
    let again: [(name: String, array: HostArray)]
    let metadataAgain: [String: String]
    do {
        again = try SafeTensors.decode(encoded, file: "roundtrip.safetensors")
        metadataAgain = try SafeTensors.readHeader(
            from: MemorySource(bytes: encoded, label: "roundtrip.safetensors")).metadata
    } catch {
        fuzzFail("SafeTensors.encode output does not decode: \(error)")
    }
    if again.map(\.name) != tensors.map(\.name) {
        fuzzFail("round trip changed the names or order: \(tensors.map(\.name)) -> \(again.map(\.name))")
    }
    for (a, b) in zip(tensors, again) where !sameBits(a.array, b.array) {
        fuzzFail("round trip changed '\(a.name)': \(describe(a.array)) -> \(describe(b.array))")
    }
    if metadataAgain != metadata {
        fuzzFail("round trip changed __metadata__: \(metadata) -> \(metadataAgain)")
    }
    return 0
}
