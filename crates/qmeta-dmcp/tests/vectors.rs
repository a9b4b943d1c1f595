//! Test vectors quoted in `docs/DMCP.md` ("Examples"). If the format
//! changes, regenerate with `cargo test -p qmeta-dmcp --test vectors --
//! --nocapture` and update the document from the printed hex.

use qmeta_dmcp::*;
use qmeta_fields::{FieldId, FieldSet};
use uuid::Uuid;

const NOW: u64 = 1_700_000_000_000;
const KEY_ID: Uuid = Uuid::from_u128(0x00112233_4455_6677_8899_aabbccddeeff);

fn key() -> Vec<u8> {
    (0u8..64).collect()
}

fn lb() -> Endpoint {
    let allowed: FieldSet = [FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI].into_iter().collect();
    let default: FieldSet = [FieldId::SRC_IP, FieldId::TIMESTAMP].into_iter().collect();
    Endpoint::new(ControlState::new(default, allowed), Limits::default())
}

const INCLUDE_REQ: &str = "444d43500101000700060a24181e40000000018bcfe56800\
00112233445566778899aabbccddeeff\
0003\
6167656e742d61\
000006\
21a805ba71facf3594d62478138d2987";

const INCLUDE_ACK: &str = "444d43500181000000060a24181e40000000018bcfe56800\
00112233445566778899aabbccddeeff\
0014\
0000000000000001000001000003000100050006\
5c61c89055ca520c9dd0101fce413318";

const UNKNOWN_KEY_ERR: &str = "444d43500183000000060a24181e40000000018bcfe56800\
00112233445566778899aabbccddeeff\
0021\
00c81e6b657920696420756e6b6e6f776e20746f20746865204c422773204b4d45\
00000000000000000000000000000000";

fn show(name: &str, bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    println!("{name}: {h}");
    h
}

#[test]
fn include_request_ack_and_unknown_key_error() {
    let mut client = ClientSession::new("agent-a".into());
    let req = client.request(&Command::Include { scope: Scope::Backend, field: FieldId::SNI }, KEY_ID, &key(), NOW);
    let req_hex = show("request", &req);

    let (_, incoming) = parse_frame(&req).unwrap().unwrap();
    let handled = lb().handle(incoming.clone(), Some(&key()), NOW, [0; 32]);
    let ack_hex = show("ack", &handled.reply);
    let unknown = lb().handle(incoming, None, NOW, [0; 32]);
    let err_hex = show("unknown key", &unknown.reply);

    assert_eq!(req_hex, INCLUDE_REQ);
    assert_eq!(ack_hex, INCLUDE_ACK);
    assert_eq!(err_hex, UNKNOWN_KEY_ERR);
    let (_, reply) = client.read_reply(&handled.reply, &key()).unwrap().unwrap();
    assert!(matches!(reply, Reply::Ack { version: 1, .. }));
}
