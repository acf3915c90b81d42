// libFuzzer harness for NPY.decode(_:file:).
//
// Outcomes allowed: a HostArray, or a FileFormatError. Anything else (a
// trap, another error type, an ASan report) is a crash. A decoded array
// must also survive NPY.encode and decode again bit for bit, and encoding
// the re-decoded array must give the same bytes.
import Network

@_cdecl("LLVMFuzzerTestOneInput")
public func npyFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let array: HostArray
    do {
        array = try NPY.decode(bytes, file: "fuzz.npy")
    } catch is FileFormatError {
        return 0
    } catch {
        fuzzFail("NPY.decode threw \(type(of: error)), not FileFormatError: \(error)")
    }
    let encoded = NPY.encode(array)
    let again: HostArray
    do {
        again = try NPY.decode(encoded, file: "roundtrip.npy")
    } catch {
        fuzzFail("NPY.encode output for \(describe(array)) does not decode: \(error)")
    }
    if !sameBits(array, again) {
        fuzzFail("round trip changed \(describe(array)) into \(describe(again))")
    }
    if NPY.encode(again) != encoded {
        fuzzFail("encoding is not stable for \(describe(array))")
    }
    return 0
}
