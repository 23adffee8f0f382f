#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| stt_proto::fuzzing::relay_frames(data));
