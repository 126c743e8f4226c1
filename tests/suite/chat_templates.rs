//! Chat templates against transformers' `apply_chat_template`: the rendered prompt and its
//! ids, for the Llama 3, Qwen2.5 and Qwen3 templates the fixture tokenizers carry.

use crate::common;

use common::*;
use infergraph::models::chat::{ChatMessage, ChatTemplate, Conversation, TemplateSource};
use infergraph::models::tokenizer::TextTokenizer;
use serde_json::Value;

/// `(fixture file, model fixture whose tokenizer_config.json carries that template)`.
const TEMPLATES: [(&str, &str); 3] = [
    ("llama3", "llama-tiny"),
    ("qwen2.5", "qwen2-tiny"),
    ("qwen3", "qwen3-tiny"),
];

fn read(path: std::path::PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn template_of(model: &str) -> ChatTemplate {
    let config = read(fixture(model).join("tokenizer_config.json"));
    ChatTemplate::from_folder(&fixture(model), Some(&config))
        .unwrap()
        .expect("the fixture has a template")
}

#[test]
fn tools_calls_and_tool_answers_render_as_transformers_renders_them() {
    let golden = read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/chat/tool_renders.json"),
    );
    let conversation: Conversation = serde_json::from_value(
        serde_json::json!({"messages": golden["messages"], "tools": golden["tools"]}),
    )
    .unwrap();
    for (model, prompt) in golden["prompts"].as_object().unwrap() {
        let rendered = template_of(model)
            .render_conversation(&conversation)
            .unwrap();
        assert_eq!(rendered, prompt.as_str().unwrap(), "{model}");
    }
}

#[test]
fn a_template_that_does_not_read_tools_gets_them_in_a_system_text_and_calls_in_the_answer() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}".into(),
        TemplateSource::Config,
        None,
        std::path::Path::new("config.toml"),
    )
    .unwrap();
    let conversation: Conversation = serde_json::from_value(serde_json::json!({
        "messages": [
            {"role": "user", "content": "Time?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "get_time", "arguments": {"zone": "CET"}}}]},
            {"role": "tool", "content": "12:00", "tool_call_id": "c"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_time"}}],
    }))
    .unwrap();
    let rendered = template.render_conversation(&conversation).unwrap();
    let (system, rest) = rendered.split_once("\nuser: Time?\n").unwrap();
    assert!(
        system.starts_with("system: You may call one or more functions"),
        "{system}"
    );
    assert!(system.contains(r#"{"type": "function", "function": {"name": "get_time"}}"#));
    assert!(system.contains("<tool_call>"), "{system}");
    assert_eq!(
        rest,
        "assistant: <tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>\ntool: 12:00\n"
    );
    // Without tools, the calls still show, and nothing is added.
    let without = Conversation {
        tools: Vec::new(),
        ..conversation
    };
    let rendered = template.render_conversation(&without).unwrap();
    assert!(
        rendered.starts_with("user: Time?\nassistant: <tool_call>"),
        "{rendered}"
    );
}

#[test]
fn rendered_prompts_and_ids_equal_transformers_for_every_conversation() {
    for (name, model) in TEMPLATES {
        let template = template_of(model);
        assert_eq!(template.source(), TemplateSource::TokenizerConfig);
        let tokenizer = TextTokenizer::from_file(&fixture(model).join("tokenizer.json")).unwrap();
        let chats = read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/chat")
                .join(format!("{name}.json")),
        );
        for conversation in chats["conversations"].as_array().unwrap() {
            let kwargs = conversation
                .get("template_kwargs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let prompt = template
                .render(
                    &chat_messages(conversation),
                    conversation["add_generation_prompt"].as_bool().unwrap(),
                    &kwargs,
                )
                .unwrap();
            let label = format!("{name} {}", conversation["name"]);
            assert_eq!(prompt, conversation["prompt"].as_str().unwrap(), "{label}");
            assert_eq!(
                tokenizer.encode_rendered(&prompt).unwrap(),
                u32s(&conversation["ids"]),
                "{label}"
            );
        }
    }
}

#[test]
fn a_template_that_raises_or_loops_forever_is_an_error_not_a_hang() {
    let config = serde_json::json!({"eos_token": "</s>"});
    let path = std::path::Path::new("config.toml");
    let raising = ChatTemplate::new(
        "{{ raise_exception('Conversation roles must alternate') }}".into(),
        TemplateSource::Config,
        Some(&config),
        path,
    )
    .unwrap();
    let error = raising.render(&[], true, &Default::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Conversation roles must alternate"),
        "{error}"
    );
    let looping = ChatTemplate::new(
        // Ten billion iterations: only the fuel bound ends it.
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
            .into(),
        TemplateSource::Config,
        Some(&config),
        path,
    )
    .unwrap();
    let error = looping.render(&[], true, &Default::default()).unwrap_err();
    assert!(error.to_string().contains("time bound"), "{error}");
}

#[test]
fn tojson_writes_what_pythons_json_dumps_writes() {
    let template = ChatTemplate::new(
        "{{ {'a': [1, 2.5, 'é\"'], 'b': none} | tojson }}|{{ [1, {'x': true}] | tojson(indent=2) }}"
            .into(),
        TemplateSource::Config,
        None,
        std::path::Path::new("config.toml"),
    )
    .unwrap();
    assert_eq!(
        template.render(&[], false, &Default::default()).unwrap(),
        "{\"a\": [1, 2.5, \"é\\\"\"], \"b\": null}|[\n  1,\n  {\n    \"x\": true\n  }\n]"
    );
}

#[test]
fn a_messages_name_reaches_the_template_only_when_given() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}{% if m.name is defined %} ({{ m.name }}){% endif %}: {{ m.content }}\n{% endfor %}"
            .into(),
        TemplateSource::Config,
        None,
        std::path::Path::new("config.toml"),
    )
    .unwrap();
    let message = |role: &str, content: &str, name: Option<&str>| ChatMessage {
        name: name.map(str::to_string),
        ..ChatMessage::new(role, content)
    };
    let messages = [
        message("user", "Hi, I am Ada.", Some("ada")),
        message("assistant", "Hello!", None),
    ];
    assert_eq!(
        template
            .render(&messages, false, &Default::default())
            .unwrap(),
        "user (ada): Hi, I am Ada.\nassistant: Hello!\n"
    );
}
