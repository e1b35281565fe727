//! Training on the device: a `VulkanSession` keeps parameters and optimizer state in device buffers across steps.
//!
//! Ten SGD and ten Adam steps of a zoo model through a session follow the interpreter's trajectory (losses and
//! final parameters within `|a − b| ≤ 1e-4 + 1e-4·|b|`, the SPIR-V tests' tolerance) and match the host round trip
//! through the same executable's `run` exactly (same shaders, same inputs); a step moves only the data inputs and the
//! outputs that replace nothing; `read` / `write` round-trip; bad inputs are errors naming them.
//!
//! Without a Vulkan device the tests print why and return — unless `KILN_REQUIRE_VULKAN=1` (set by CI, which runs
//! Mesa's lavapipe), where a missing device is a failure.

use crate::support::random::random_tensor;
use crate::support::vulkan::device;
use kiln::backend::spirv::{self, Device, Residency, VulkanExecutable, VulkanSession};
use kiln::ir::{text, DType, Graph, Tensor, TensorType};
use kiln::{fusion, training_step, zoo, Adam, Optimizer, Role, Sgd};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 + 1e-4 * b.abs()
}

/// Bytes on the device (bool is a 32-bit word there).
fn device_bytes(ty: &TensorType) -> u64 {
    let element = if ty.dtype == DType::F64 { 8 } else { 4 };
    (ty.numel() * element) as u64
}

/// The twolayer zoo model's training step under `optimizer`, compiled for `device` with the GPU plans (workgroup
/// reductions, tiled matmuls) even on lavapipe.
fn twolayer_step(device: &Device, optimizer: &Optimizer) -> (Graph, Arc<VulkanExecutable>) {
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, optimizer).unwrap();
    let program = fusion::lower(&step).unwrap();
    let exe =
        spirv::compile_with(device, &program, &spirv::Options::gpu_plans(device.info())).unwrap();
    (step, Arc::new(exe))
}

/// Ten steps on fresh minibatches through a session, through `run` with the parameters fed back on the host, and on
/// the interpreter, from the same parameters (optimizer state from zero).
fn check_trajectory(optimizer: Optimizer) {
    let Some(device) = device() else { return };
    let (step, exe) = twolayer_step(device, &optimizer);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Parameters and data drawn; state left out everywhere, so each path starts it at zero on its own.
    let initial: HashMap<String, Tensor> = step
        .inputs()
        .filter(|i| i.role != Role::State)
        .map(|i| (i.name.to_string(), random_tensor(i.ty, &mut rng)))
        .collect();
    let mut session =
        VulkanSession::new(Arc::clone(&exe), &Residency::of_graph(&step), &initial).unwrap();
    let data_names: Vec<String> = session
        .data_input_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let expected_data: Vec<&str> = step
        .inputs()
        .filter(|i| {
            !step
                .outputs()
                .iter()
                .any(|o| o.aliases.as_deref() == Some(i.name))
        })
        .map(|i| i.name)
        .collect();
    assert_eq!(data_names, expected_data);
    let loss_at = session
        .output_names()
        .iter()
        .position(|&n| n == "loss")
        .unwrap();

    let mut reference = initial.clone();
    let mut host: HashMap<String, Tensor> = initial.clone();
    for i in step.inputs().filter(|i| i.role == Role::State) {
        host.insert(i.name.to_string(), Tensor::zeros(i.ty.clone()));
    }
    for k in 0..10 {
        let data: Vec<Tensor> = step
            .inputs()
            .filter(|i| data_names.iter().any(|n| n == i.name))
            .map(|i| random_tensor(i.ty, &mut rng))
            .collect();
        for (name, t) in data_names.iter().zip(&data) {
            reference.insert(name.clone(), t.clone());
            host.insert(name.clone(), t.clone());
        }
        let expected = kiln::step_on_interpreter(&step, &mut reference).unwrap();
        let returned = session.step(&data).unwrap();
        let loss = returned[loss_at].scalar_value().unwrap();
        // The host round trip through the same executable: every input up, every output down.
        let inputs: Vec<Tensor> = step.inputs().map(|i| host[i.name].clone()).collect();
        let outputs = exe.run(&inputs).unwrap();
        let mut host_loss = f64::NAN;
        for (o, v) in step.outputs().iter().zip(outputs) {
            match &o.aliases {
                Some(target) => {
                    host.insert(target.clone(), v);
                }
                None if o.name == "loss" => host_loss = v.scalar_value().unwrap(),
                None => {}
            }
        }
        println!("step {k}: interpreter {expected:.7}, session {loss:.7}, host {host_loss:.7}");
        assert!(close(loss, expected), "step {k}: loss {loss} vs {expected}");
        assert_eq!(
            loss.to_bits(),
            host_loss.to_bits(),
            "step {k}: session vs host"
        );
    }
    for name in session.resident_names() {
        let on_device = session.read(name).unwrap();
        assert_eq!(
            on_device.to_f64_vec(),
            host[name].to_f64_vec(),
            "{name}: session vs host round trip"
        );
        let (a, e) = (on_device.to_f64_vec(), reference[name].to_f64_vec());
        if let Some(j) = (0..a.len()).find(|&j| !close(a[j], e[j])) {
            panic!("{name}[{j}]: session {} vs interpreter {}", a[j], e[j]);
        }
    }
}

#[test]
fn ten_sgd_steps_in_a_session_follow_the_interpreter() {
    check_trajectory(Optimizer::Sgd(Sgd::default()));
}

#[test]
fn ten_adam_steps_in_a_session_follow_the_interpreter() {
    check_trajectory(Optimizer::Adam(Adam::default()));
}

#[test]
fn a_step_moves_only_the_data_and_the_outputs_that_replace_nothing() {
    let Some(device) = device() else { return };
    let (step, exe) = twolayer_step(device, &Optimizer::Adam(Adam::default()));
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let initial: HashMap<String, Tensor> = step
        .inputs()
        .filter(|i| i.role == Role::Param)
        .map(|i| (i.name.to_string(), random_tensor(i.ty, &mut rng)))
        .collect();
    let session = VulkanSession::new(exe, &Residency::of_graph(&step), &initial).unwrap();
    let resident: Vec<&str> = step
        .outputs()
        .iter()
        .filter_map(|o| o.aliases.as_deref())
        .collect();
    let upload: u64 = step
        .inputs()
        .filter(|i| !resident.contains(&i.name))
        .map(|i| device_bytes(i.ty))
        .sum();
    let download: u64 = step
        .outputs()
        .iter()
        .filter(|o| o.aliases.is_none())
        .map(|o| device_bytes(&step.node(o.value).ty))
        .sum();
    let everything: u64 = step.inputs().map(|i| device_bytes(i.ty)).sum();
    let bytes = session.bytes_per_step();
    println!("per step: {bytes:?}; a host round trip uploads {everything} B");
    assert_eq!((bytes.upload, bytes.download), (upload, download));
    // The parameters and Adam's moments are most of the bytes of a step's inputs.
    assert!(bytes.upload < everything / 2);
    assert_eq!(session.output_names(), ["loss"]);
}

#[test]
fn read_and_write_round_trip_and_state_starts_at_zero() {
    let Some(device) = device() else { return };
    let (step, exe) = twolayer_step(device, &Optimizer::Adam(Adam::default()));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let initial: HashMap<String, Tensor> = step
        .inputs()
        .filter(|i| i.role == Role::Param)
        .map(|i| (i.name.to_string(), random_tensor(i.ty, &mut rng)))
        .collect();
    let mut session =
        VulkanSession::new(Arc::clone(&exe), &Residency::of_graph(&step), &initial).unwrap();
    for input in step.inputs() {
        match input.role {
            Role::Param => assert_eq!(session.read(input.name).unwrap(), initial[input.name]),
            Role::State => {
                let zero = Tensor::zeros(input.ty.clone());
                assert_eq!(session.read(input.name).unwrap(), zero);
            }
            Role::Data => assert!(session.read(input.name).is_err()),
        }
    }
    // Write every resident input, read it back bit for bit, then check a step starts from the written values.
    let mut written: HashMap<String, Tensor> = HashMap::new();
    for name in session
        .resident_names()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    {
        let ty = step.input(&name).unwrap().ty.clone();
        let mut value = random_tensor(&ty, &mut rng);
        if name.contains(".v.") {
            // Adam's second moment is non-negative.
            let abs: Vec<f64> = value.to_f64_vec().iter().map(|v| v.abs()).collect();
            value = Tensor::from_f64_values(ty.clone(), &abs).unwrap();
        }
        session.write(&name, &value).unwrap();
        assert_eq!(session.read(&name).unwrap(), value, "{name}");
        written.insert(name, value);
    }
    let data: Vec<Tensor> = session
        .data_input_names()
        .iter()
        .map(|n| random_tensor(step.input(n).unwrap().ty, &mut rng))
        .collect();
    let mut all = written.clone();
    for (n, t) in session.data_input_names().iter().zip(&data) {
        all.insert(n.to_string(), t.clone());
    }
    let inputs: Vec<Tensor> = step.inputs().map(|i| all[i.name].clone()).collect();
    let host = exe.run(&inputs).unwrap();
    let returned = session.step(&data).unwrap();
    for (o, v) in step.outputs().iter().zip(&host) {
        match &o.aliases {
            Some(target) => assert_eq!(&session.read(target).unwrap(), v, "{}", o.name),
            None => assert_eq!(&returned[0], v, "{}", o.name),
        }
    }
}

#[test]
fn bad_inputs_are_errors_naming_them() {
    let Some(device) = device() else { return };
    let (step, exe) = twolayer_step(device, &Optimizer::Sgd(Sgd::default()));
    let residency = Residency::of_graph(&step);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let params: Vec<(String, TensorType)> = step
        .inputs()
        .filter(|i| i.role == Role::Param)
        .map(|i| (i.name.to_string(), i.ty.clone()))
        .collect();
    let mut initial: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, ty)| (n.clone(), random_tensor(ty, &mut rng)))
        .collect();
    let err = |r: Result<VulkanSession, spirv::VulkanError>| r.unwrap_err().to_string();

    // A missing parameter (not state) is an error naming it.
    let (first, first_ty) = params[0].clone();
    let mut missing = initial.clone();
    missing.remove(&first);
    let e = err(VulkanSession::new(Arc::clone(&exe), &residency, &missing));
    assert!(e.contains(&format!("`{first}`")), "{e}");
    // A wrong-typed initial value.
    let wrong = Tensor::zeros(TensorType::new(first_ty.dtype, vec![first_ty.numel() + 1]));
    initial.insert(first.clone(), wrong.clone());
    let e = err(VulkanSession::new(Arc::clone(&exe), &residency, &initial));
    assert!(e.contains(&format!("`{first}`")), "{e}");
    initial.insert(first.clone(), random_tensor(&first_ty, &mut rng));
    // A residency naming what the program lacks.
    let bogus = Residency {
        aliases: vec![("new.nothing".into(), first.clone())],
        state: vec![],
    };
    let e = err(VulkanSession::new(Arc::clone(&exe), &bogus, &initial));
    assert!(e.contains("new.nothing"), "{e}");

    let mut session = VulkanSession::new(Arc::clone(&exe), &residency, &initial).unwrap();
    let names: Vec<String> = session
        .data_input_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let good: Vec<Tensor> = names
        .iter()
        .map(|n| random_tensor(step.input(n).unwrap().ty, &mut rng))
        .collect();
    // Too few tensors.
    let e = session
        .step(&good[..good.len() - 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&names.join(", ")), "{e}");
    // A wrong shape, then a wrong dtype, for each data input.
    for (k, name) in names.iter().enumerate() {
        let ty = step.input(name).unwrap().ty.clone();
        let mut shape = ty.dims().to_vec();
        shape.push(1);
        for bad_ty in [
            TensorType::new(ty.dtype, shape),
            TensorType::new(
                if ty.dtype == DType::F64 {
                    DType::F32
                } else {
                    DType::F64
                },
                ty.dims().to_vec(),
            ),
        ] {
            let mut bad = good.clone();
            bad[k] = Tensor::zeros(bad_ty);
            let e = session.step(&bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{name}`")), "{e}");
        }
    }
    // Reading or writing a data input, or writing a wrong type.
    let e = session.read(&names[0]).unwrap_err().to_string();
    assert!(e.contains(&format!("`{}`", names[0])), "{e}");
    let e = session.write(&first, &wrong).unwrap_err().to_string();
    assert!(e.contains(&format!("`{first}`")), "{e}");
    let e = session.write(&names[0], &good[0]).unwrap_err().to_string();
    assert!(e.contains(&format!("`{}`", names[0])), "{e}");
    // After all that, the session still steps, from its initial values.
    let before = session.read(&first).unwrap();
    assert_eq!(before, initial[&first]);
    session.step(&good).unwrap();
    assert_ne!(session.read(&first).unwrap(), before);
}

/// Outputs that are themselves resident inputs: `new.a = b, new.b = a` swaps (through the session's scratch
/// buffer), and an output naming a resident input returns its value before the update.
#[test]
fn swapping_resident_inputs_and_returning_one() {
    let Some(device) = device() else { return };
    let graph = text::parse(
        "graph swap {
          %a = input{role=param} : f32[3]
          %b = input{role=param} : f32[3]
          %x = input{role=data} : f32[3]
          %1 = mul %a, %x : f32[3]
          %2 = reduce_sum{axes=[0], keep_dims=false} %1 : f32[]
          output loss = %2
          output new.a = %b aliases %a
          output new.b = %a aliases %b
          output old.a = %a
        }",
    )
    .unwrap();
    let exe = spirv::compile(device, &fusion::lower(&graph).unwrap()).unwrap();
    let t =
        |v: [f64; 3]| Tensor::from_f64_values(TensorType::new(DType::F32, vec![3]), &v).unwrap();
    let initial = HashMap::from([
        ("a".to_string(), t([1.0, 2.0, 3.0])),
        ("b".to_string(), t([10.0, 20.0, 30.0])),
    ]);
    let mut session = VulkanSession::new(exe, &Residency::of_graph(&graph), &initial).unwrap();
    assert_eq!(session.output_names(), ["loss", "old.a"]);
    let x = t([1.0, 1.0, 1.0]);
    let first = session.step(std::slice::from_ref(&x)).unwrap();
    assert_eq!(first[0].scalar_value(), Some(6.0));
    assert_eq!(first[1], initial["a"]);
    assert_eq!(session.read("a").unwrap(), initial["b"]);
    assert_eq!(session.read("b").unwrap(), initial["a"]);
    let second = session.step(&[x]).unwrap();
    assert_eq!(second[0].scalar_value(), Some(60.0));
    assert_eq!(second[1], initial["b"]);
    assert_eq!(session.read("a").unwrap(), initial["a"]);
    assert_eq!(session.bytes_per_step().upload, 12);
    assert_eq!(session.bytes_per_step().download, 4 + 12);
}
