// libFuzzer entry point for NodeGuard's two decoders of untrusted bytes: the
// deny-list (a file anyone with write access to /etc/nodeguard can edit)
// and the control protocol's request line (anyone allowed on the socket).
// Built by fuzz/run.sh (SwiftPM, -sanitize=fuzzer,address, -DFUZZING) with
// NodeGuardControl and what it depends on; a crash, a hang or a sanitizer
// report is a bug.

import NodeGuardControl

#if !FUZZING
/// In an ordinary build the harness is a program that says how to run it.
@main
enum FuzzDecodersHelp {
    static func main() {
        print("the libFuzzer harness; run it with: bash fuzz/run.sh [SECONDS]")
    }
}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoders(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    do {
        let list = try DenyListCodec.decode(bytes, source: "fuzz")
        // Whatever decodes must encode and decode back to the same list.
        let again = try DenyListCodec.decode(Array(DenyListCodec.encode(list).utf8), source: "fuzz-roundtrip")
        precondition(again == list, "deny-list round trip changed the list")
    } catch {
        precondition(!error.message.isEmpty, "an error without a message")
    }
    do {
        let request = try ControlRequest.decode(bytes)
        let again = try ControlRequest.decode(Array(request.encoded().utf8))
        precondition(again == request, "request round trip changed the request")
    } catch {
        precondition(!error.message.isEmpty, "an error without a message")
    }
    return 0
}
