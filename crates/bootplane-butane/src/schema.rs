//! The Ignition 3.x types as Butane emits them: field order (Go struct order, which is
//! the JSON key order), the Butane spelling of each key, the scalar kind, the spec
//! version a field appeared in, and which fields are written even when absent. One table
//! serves every spec from 3.0.0 to 3.5.0; `@3.x` marks a field that older specs lack,
//! and an older config that uses it gets Butane's "unused key" warning.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
    Struct(&'static str),
    List(Box<Ty>),
}

#[derive(Debug, Clone)]
pub struct Field {
    pub ign: &'static str,
    pub bu: &'static str,
    pub ty: Ty,
    /// Minor version of spec 3.x that introduced the field.
    pub since: u32,
    /// Written even when the input lacks it (Go fields without omitempty).
    pub always: bool,
    /// Omitted when zero even though set (a non-pointer Go field).
    pub omit_zero: bool,
}

const TABLE: &str = r#"
Config: ignition:Ignition kernelArguments=kernel_arguments:KernelArguments@3 passwd:Passwd storage:Storage systemd:Systemd
Ignition: config:IgnitionConfig proxy:Proxy@1 security:Security timeouts:Timeouts version:str@99
IgnitionConfig: merge:[Resource] replace:Resource
Proxy: httpProxy=http_proxy:str httpsProxy=https_proxy:str noProxy=no_proxy:[str]
Security: tls:TLS
TLS: certificateAuthorities=certificate_authorities:[Resource]
Timeouts: httpResponseHeaders=http_response_headers:int httpTotal=http_total:int
KernelArguments: shouldExist=should_exist:[str] shouldNotExist=should_not_exist:[str]
Passwd: groups:[PasswdGroup] users:[PasswdUser]
PasswdUser: gecos:str groups:[str] homeDir=home_dir:str name:str! noCreateHome=no_create_home:bool noLogInit=no_log_init:bool noUserGroup=no_user_group:bool passwordHash=password_hash:str primaryGroup=primary_group:str sshAuthorizedKeys=ssh_authorized_keys:[str] shell:str shouldExist=should_exist:bool@2 system:bool uid:int
PasswdGroup: gid:int name:str! passwordHash=password_hash:str shouldExist=should_exist:bool@2 system:bool
Storage: directories:[Directory] disks:[Disk] files:[File] filesystems:[Filesystem] links:[Link] luks:[Luks]@2 raid:[Raid]
Directory: group:NodeGroup overwrite:bool path:str! user:NodeUser mode:int
File: group:NodeGroup overwrite:bool path:str! user:NodeUser append:[Resource] contents:Resource mode:int
Link: group:NodeGroup overwrite:bool path:str! user:NodeUser hard:bool target:str
NodeUser: id:int name:str
NodeGroup: id:int name:str
Resource: compression:str httpHeaders=http_headers:[HTTPHeader]@1 source:str verification:Verification
HTTPHeader: name:str! value:str
Verification: hash:str
Disk: device:str! partitions:[Partition] wipeTable=wipe_table:bool
Partition: guid:str label:str number:int~ resize:bool@2 shouldExist=should_exist:bool sizeMiB=size_mib:int startMiB=start_mib:int typeGuid=type_guid:str wipePartitionEntry=wipe_partition_entry:bool
Filesystem: device:str! format:str label:str mountOptions=mount_options:[str]@1 options:[str] path:str uuid:str wipeFilesystem=wipe_filesystem:bool
Luks: cex:Cex@5 clevis:Clevis device:str discard:bool@4 keyFile=key_file:Resource label:str name:str! openOptions=open_options:[str]@4 options:[str] uuid:str wipeVolume=wipe_volume:bool
Cex: enabled:bool
Clevis: custom:ClevisCustom tang:[Tang] threshold:int tpm2:bool
ClevisCustom: config:str needsNetwork=needs_network:bool pin:str
Tang: advertisement:str@4 thumbprint:str url:str!
Raid: devices:[str] level:str name:str! options:[str] spares:int
Systemd: units:[Unit]
Unit: contents:str dropins:[Dropin] enabled:bool mask:bool name:str!
Dropin: contents:str name:str!
"#;

fn parse_ty(s: &str) -> Ty {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return Ty::List(Box::new(parse_ty(inner)));
    }
    match s {
        "str" => Ty::Str,
        "int" => Ty::Int,
        "bool" => Ty::Bool,
        other => Ty::Struct(Box::leak(other.to_string().into_boxed_str())),
    }
}

pub fn types() -> &'static HashMap<&'static str, Vec<Field>> {
    static T: OnceLock<HashMap<&'static str, Vec<Field>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = HashMap::new();
        for line in TABLE.lines().filter(|l| !l.trim().is_empty()) {
            let (name, rest) = line.split_once(':').expect("type line");
            let mut fields = Vec::new();
            for f in rest.split_whitespace() {
                let (keys, ty) = f.split_once(':').expect("field");
                let (ign, bu) = keys.split_once('=').unwrap_or((keys, keys));
                let mut ty = ty.to_string();
                let always = ty.ends_with('!');
                let omit_zero = ty.ends_with('~');
                ty = ty.trim_end_matches(['!', '~']).to_string();
                let (ty, since) = match ty.split_once('@') {
                    Some((t, v)) => (t.to_string(), v.parse().expect("since")),
                    None => (ty, 0),
                };
                fields.push(Field {
                    ign: Box::leak(ign.to_string().into_boxed_str()),
                    bu: Box::leak(bu.to_string().into_boxed_str()),
                    ty: parse_ty(&ty),
                    since,
                    always,
                    omit_zero,
                });
            }
            out.insert(&*Box::leak(name.trim().to_string().into_boxed_str()), fields);
        }
        out
    })
}

/// Puts `m`'s keys in the Go field order of Ignition type `ty` (keys the type lacks
/// keep their place after). Generated and merged entries go through this so their
/// JSON key order is Butane's.
pub fn order_map(ty: &str, m: &mut serde_json::Map<String, serde_json::Value>) {
    let Some(fields) = types().get(ty) else { return };
    let mut out = serde_json::Map::new();
    for f in fields {
        if let Some(x) = m.remove(f.ign) {
            out.insert(f.ign.to_string(), x);
        }
    }
    for (k, x) in std::mem::take(m) {
        out.insert(k, x);
    }
    *m = out;
}

/// [`order_map`], applied to `v` and every struct nested in it.
pub fn order(ty: &str, v: &mut serde_json::Value) {
    let serde_json::Value::Object(m) = v else { return };
    order_map(ty, m);
    let Some(fields) = types().get(ty) else { return };
    for f in fields {
        let mut t = &f.ty;
        while let Ty::List(inner) = t {
            t = inner;
        }
        let (Ty::Struct(name), Some(x)) = (t, m.get_mut(f.ign)) else { continue };
        match x {
            serde_json::Value::Array(a) => a.iter_mut().for_each(|e| order(name, e)),
            other => order(name, other),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_is_consistent() {
        let t = super::types();
        for (name, fields) in t {
            for f in fields {
                let mut ty = &f.ty;
                while let super::Ty::List(inner) = ty {
                    ty = inner;
                }
                if let super::Ty::Struct(s) = ty {
                    assert!(t.contains_key(s), "{name}.{} refers to unknown type {s}", f.ign);
                }
            }
        }
        assert_eq!(t["Partition"][2].ign, "number");
        assert!(t["Partition"][2].omit_zero);
    }
}
