"""Every user-facing sentence, in English and Brazilian Portuguese, so all fronts say the same.

Texts use a light Markdown (`*bold*`, `` `code` ``) that each front renders or strips.
"""

from __future__ import annotations

import math

from core.conversation import Notice
from core.errors import (
    AttachmentsTooLarge,
    ChatbridgeError,
    FileTooLarge,
    InvalidAttachment,
    ModelCannotReadImages,
    ModelCircuitOpen,
    ModelRateLimited,
    QuotaExceeded,
    RateLimited,
    TranscriptionFailed,
    TurnTimeout,
)
from core.sessions.usage import UsageReport, UsageTotals

ENGLISH = "en"
PORTUGUESE = "pt-BR"
LOCALES = (ENGLISH, PORTUGUESE)

COMMAND_DESCRIPTIONS: dict[str, dict[str, str]] = {
    ENGLISH: {
        "new": "Start a new conversation (optional title)",
        "sessions": "List your conversations",
        "switch": "Switch to a conversation by number or id",
        "history": "Show the last messages (optional count)",
        "export": "Download this conversation as a Markdown file",
        "delete": "Delete a conversation (the current one by default)",
        "rename": "Give the current conversation a new title",
        "model": "Show or choose the model",
        "persona": "Show or set this conversation's persona (system prompt)",
        "retry": "Answer your last message again",
        "stop": "Stop the answer being written",
        "usage": "Your tokens and cost today and in the last 30 days",
        "help": "What I can do",
    },
    PORTUGUESE: {
        "new": "Começar uma nova conversa (título opcional)",
        "sessions": "Listar suas conversas",
        "switch": "Trocar de conversa pelo número ou id",
        "history": "Mostrar as últimas mensagens (quantidade opcional)",
        "export": "Baixar esta conversa como arquivo Markdown",
        "delete": "Apagar uma conversa (a atual por padrão)",
        "rename": "Dar um novo título à conversa atual",
        "model": "Ver ou escolher o modelo",
        "persona": "Ver ou definir a persona (prompt de sistema) desta conversa",
        "retry": "Responder de novo a sua última mensagem",
        "stop": "Interromper a resposta em andamento",
        "usage": "Seus tokens e custo hoje e nos últimos 30 dias",
        "help": "O que eu sei fazer",
    },
}

# What each command option means, where a platform shows it (Discord's slash commands).
OPTION_DESCRIPTIONS: dict[str, dict[str, str]] = {
    ENGLISH: {
        "new.title": "A title for the conversation",
        "switch.session": "The conversation: pick one, or type its number",
        "history.n": "How many messages to show",
        "delete.session": "The conversation (the current one if left out)",
        "rename.title": "The new title of the current conversation",
        "model.id": "A model id, e.g. anthropic/claude-3.5-haiku",
        "persona.persona": "A preset's name, your own instructions, or reset",
    },
    PORTUGUESE: {
        "new.title": "Um título para a conversa",
        "switch.session": "A conversa: escolha uma ou digite o número",
        "history.n": "Quantas mensagens mostrar",
        "delete.session": "A conversa (a atual, se omitida)",
        "rename.title": "O novo título da conversa atual",
        "model.id": "Um id de modelo, p. ex. anthropic/claude-3.5-haiku",
        "persona.persona": "O nome de uma predefinição, suas próprias instruções, ou reset",
    },
}

_TEXTS: dict[str, dict[str, str]] = {
    ENGLISH: {
        "welcome": "Hi! Send me a message and I will answer with an AI model. "
        "Your conversations are kept for {ttl_minutes} minutes after their last message.",
        "help_header": "*Commands*",
        "untitled": "New conversation",
        "you": "You",
        "assistant": "Assistant",
        "system": "System",
        "session_created": "Started *{title}*. Send a message to begin.",
        "sessions_header": "*Your conversations* (▶ = current):",
        "sessions_empty": "You have no conversations yet. Just send a message, or use /new.",
        "session_line": "{marker}{number}. {title} · {count} messages · {model}",
        "session_persona": " · 🎭 {persona}",
        "persona_custom": "custom",
        "persona_default": "the default",
        "persona_current": "*{title}* answers as {label}:\n\n{prompt}\n\n"
        "Pick a preset below, send /persona followed by your own instructions, or "
        "/persona reset to go back to the default.",
        "persona_none": "Your next conversation answers as the default:\n\n{prompt}\n\n"
        "Pick a preset below, or send /persona followed by your own instructions.",
        "persona_set": "*{title}* now answers as {label}.",
        "persona_reset": "*{title}* is back to the default persona.",
        "persona_reset_choice": "↩ Default",
        "persona_unknown": "a preset's name ({names}), reset, or instructions of more than "
        "one word",
        "switched": "Now in *{title}* ({count} messages).",
        "history_header": "*{title}*: last {shown} of {total} messages",
        "history_empty": "No messages in this conversation yet.",
        "history_summary": "📝 *{heading}*: the model gets this instead of the original "
        "text.\n{summary}",
        "history_summary_cut": "(/export has it whole)",
        "summary_heading": "Summary of messages 1 to {up_to}",
        "summary_heading_one": "Summary of message 1",
        "export_summary_note": "The model gets this summary instead of the original text.",
        "export_caption": "*{title}* as Markdown ({count} messages).",
        "export_details": "Model `{model}` · started {created} · last activity {updated} · "
        "{count} messages",
        "export_persona": "Persona: {persona}",
        "export_saved": "Saved to {path}",
        "export_files": "Files:",
        "export_file": "- {name} ({media_type}, {size})",
        "export_file_gone": "(no longer kept)",
        "no_session": "You have no conversation yet. Send a message to start one.",
        "stop_button": "⏹ Stop",
        "stop_done": "⏹ Stopped. What was written so far is kept; /retry answers again.",
        "nothing_to_stop": "No answer is being written right now.",
        "answer_stopped": "⏹ Stopped.",
        "delete_confirm": "Delete *{title}* and its {count} messages? This cannot be undone.",
        "delete_yes": "Delete",
        "delete_no": "Cancel",
        "deleted": "Deleted *{title}*.",
        "usage_header": "*Your usage* (UTC days)",
        "usage_line": "{period}: {total} tokens ({prompt} prompt + {completion} answer) · ${cost}",
        "usage_today": "Today",
        "usage_30_days": "Last 30 days",
        "usage_budget": "Daily budget: {left} of {budget} tokens left today.",
        "usage_no_budget": "No daily budget.",
        "renamed": "This conversation is now *{title}*.",
        "rename_usage": "Give the new title after the command, e.g. /rename Trip to Lisbon "
        "(at most {limit} characters).",
        "model_current": "Model: `{model}`. Change it with /model <id>, e.g. /model {example}.",
        "model_set": "Model set to `{model}` for this and new conversations.",
        "reply_incomplete": "⚠️ The answer was cut off. Use /retry to ask again.",
        "unexpected": "Something went wrong on our side. Please try again.",
        "not_text": "I can't read this kind of message. Send me text, a picture, a document or "
        "a voice message.",
        "telegram_file_too_big": "Telegram lets bots download files of up to 20 MB, so I can't "
        "read this one. Send a smaller file, or the part that matters.",
        "file_download_failed": "I couldn't get your file from Telegram. Please send it again.",
        "attachment_download_failed": "I couldn't fetch your file, so I didn't take this "
        "message. Please send it again.",
        "not_allowed": "Sorry, this bot is private.",
        "content_hidden": "I can't read that: here Discord shows me only messages that mention "
        "me (this bot lacks the Message Content intent). Mention me, or use a slash command.",
        "empty_answer": "The model sent an empty answer. Try /retry.",
        "not_your_buttons": "These buttons are someone else's.",
        "previous_session_expired": "📌 Your previous conversation expired after {ttl} without "
        "messages, so this is a new one. /sessions lists the ones you still have.",
        "context_lost": "📌 Older messages of this conversation no longer reach the model, so "
        "it may not remember how it began. /new starts a fresh one.",
        "context_summarized": "📌 This conversation is long: the model now gets a summary of its "
        "older messages instead of their words. /history shows where it begins.",
        # errors, by ChatbridgeError.code
        "invalid_input": "That request is not valid.",
        "empty_message": "Your message is empty.",
        "message_too_long": "Your message has {length} characters; the limit is {limit}. "
        "Please shorten it or split it.",
        "system_prompt_too_long": "That persona has {length} characters; the limit is {limit}. "
        "Please shorten it.",
        "too_many_attachments": "Send at most {limit} files with one message; this one has "
        "{count}.",
        "heard": "🎤 “{transcript}”",
        "document_cut": "📄 Only the beginning of {name} was read: the model sees at most "
        "{limit} characters of a document.",
        "attachments_too_large": "These files are too large together: {size}, and a "
        "conversation keeps at most {limit} of files. Send fewer or smaller ones.",
        "unknown_command": "I don't know {command}. Send /help to see what I can do.",
        "invalid_argument": "Invalid {name}: {reason}.",
        "model_cannot_read_images": "`{model}` can't read images, so I didn't take this message. "
        "Send it without the image, or switch to a model that reads images with /model.",
        "model_cannot_read_images_suggest": "`{model}` can't read images, so I didn't take this "
        "message. Send it without the image, or switch to a model that reads images, "
        "e.g. /model {suggestion}.",
        "invalid_attachment": "I can't use that attachment.",
        "invalid_attachment_empty": "That file is empty.",
        "invalid_attachment_unknown_type": "I can't read that kind of file. I read pictures "
        "(JPEG, PNG, GIF, WebP), PDFs, text files in UTF-8 and audio (OGG, MP3, M4A, WAV, WebM, "
        "FLAC, AAC).",
        "invalid_attachment_not_an_image": "That file is not a picture.",
        "invalid_attachment_not_a_document": "That file is not a PDF or a text file.",
        "invalid_attachment_damaged": "That file is damaged or incomplete, so I can't open it. "
        "Try sending it again.",
        "invalid_attachment_too_many_pixels": "That picture is too large for me to open. "
        "Send a smaller version of it.",
        "invalid_attachment_encrypted": "That PDF is protected by a password. "
        "Send a copy without the password.",
        "invalid_attachment_unsupported": "That PDF is encrypted or compressed in a way I can't "
        "read. Try saving or printing it as a new PDF.",
        "invalid_attachment_not_text": "That file is not plain text in UTF-8. "
        "Save it as UTF-8 text and send it again.",
        "file_too_large": "That file is {size}; the most I take in one file is {limit}.",
        "document_has_no_text": "“{name}” has no text I can read: it may be a scan or only "
        "pictures. Send the text itself, or the pages as pictures.",
        "session_not_found": "That conversation doesn't exist or has expired. See /sessions.",
        "attachment_gone": "The file {name} is no longer kept: newer files of this "
        "conversation took its room.",
        "session_limit_reached": "You already have {limit} conversations, the most allowed. "
        "Delete one with /delete to start another.",
        "session_limit_pick": "Pick the one to delete:",
        "not_session_creator": "Only the person who started this conversation, or an admin of "
        "this chat, can rename it, delete it or change its persona.",
        "nothing_to_retry": "There is no message of yours to answer again here.",
        "session_busy": "I'm still answering your previous message. Try again in a moment.",
        "turn_lock_lost": "This answer was not saved: the conversation moved on without it "
        "(another message took over while I was answering). Use /retry to answer again.",
        "quota_exceeded": "You've reached a usage limit. Try again in {wait}.",
        "rate_limited": "You're sending messages too fast: at most {limit} messages in {window}. "
        "Try again in {wait}.",
        "daily_budget_exhausted": "You've used your {budget} tokens for today. "
        "Your budget renews at midnight UTC, in {wait}.",
        "service_stopping": "I'm restarting and didn't take that message. "
        "Please send it again in a moment.",
        "turn_stopped": "⏹ Stopped before any answer. Your message is kept: /retry answers it.",
        "turn_interrupted": "I restarted before finishing this answer. "
        "Your message is saved: use /retry to ask again.",
        "store_unavailable": "Storage is temporarily unavailable. Please try again shortly.",
        "store_full": "Storage is full right now. Delete an old conversation or try later.",
        "store_error": "Storage failed. Please try again.",
        "model_not_configured": "No AI model is configured: OPENROUTER_API_KEY is not set. "
        "Session commands still work.",
        "model_rejected": "The AI provider refused this request ({status}). "
        "Try another model with /model.",
        "model_rate_limited": "The AI provider is busy. Try again in {wait}.",
        "model_rate_limited_unknown": "The AI provider is busy. Try again in a minute.",
        "model_unavailable": "The AI model is unavailable right now. Try again shortly.",
        "model_circuit_open": "The AI model keeps failing, so I'm letting it rest for a moment. "
        "Your message is saved: try /retry in {wait}.",
        "model_timeout": "The AI model took too long to answer. Try /retry.",
        "turn_timeout": "The answer took longer than {limit}, so I stopped it; it was not saved. "
        "Your message is kept: use /retry to ask again.",
        "model_stream_broken": "The answer was cut off. Use /retry to ask again.",
        "model_empty_answer": "The AI model sent an empty answer. "
        "Your message is saved: try /retry.",
        "model_error": "The AI model could not answer. Try /retry.",
        # TranscriptionFailed, by reason; _sized and _wait: with the sizes, the wait
        "transcription_failed": "I couldn't transcribe your audio, so nothing was saved. "
        "Send it again, or type your message.",
        "transcription_not_configured": "I can't transcribe audio: no AI provider is configured "
        "(OPENROUTER_API_KEY is not set). Nothing was saved: please type your message.",
        "transcription_too_large": "Your audio is too large to transcribe. "
        "Nothing was saved: send a shorter recording.",
        "transcription_too_large_sized": "Your audio is {size}; I can transcribe at most "
        "{limit}. Nothing was saved: send a shorter recording.",
        "transcription_unsupported_format": "I can't transcribe audio of type {media_type}. "
        "Nothing was saved: send OGG, MP3, WAV, M4A, FLAC, WebM or AAC audio.",
        "transcription_rejected": "The transcription service refused this audio ({status}). "
        "Nothing was saved: send it again, or type your message.",
        "transcription_rate_limited": "The transcription service is busy. "
        "Nothing was saved: send the audio again in a minute.",
        "transcription_rate_limited_wait": "The transcription service is busy. "
        "Nothing was saved: send the audio again in {wait}.",
        "transcription_unavailable": "Transcription is unavailable right now. "
        "Nothing was saved: send the audio again shortly.",
        "transcription_unavailable_wait": "Transcription keeps failing, so I'm letting it rest "
        "for a moment. Nothing was saved: send the audio again in {wait}.",
        "transcription_timeout": "Transcribing your audio took too long. "
        "Nothing was saved: send it again, or a shorter recording.",
        "transcription_empty": "I heard no words in your audio, so nothing was saved. "
        "Send it again, or type your message.",
        "bytes": "{n} B",
        "kilobytes": "{n} kB",
        "megabytes": "{n} MB",
        "seconds": "{n} s",
        "minutes": "{n} min",
        "hours": "{n} h",
        "hours_minutes": "{h} h {m} min",
        "reply_footer": "{model} · {tokens} tokens",
        "goodbye": "Bye!",
        "prompt_you": "you> ",
        "prompt_assistant": "assistant> ",
        "prompt_choice": "choose a number (Enter to skip)> ",
    },
    PORTUGUESE: {
        "welcome": "Olá! Mande uma mensagem e eu respondo com um modelo de IA. "
        "Suas conversas ficam guardadas por {ttl_minutes} minutos após a última mensagem.",
        "help_header": "*Comandos*",
        "untitled": "Nova conversa",
        "you": "Você",
        "assistant": "Assistente",
        "system": "Sistema",
        "session_created": "Conversa *{title}* criada. Mande uma mensagem para começar.",
        "sessions_header": "*Suas conversas* (▶ = atual):",
        "sessions_empty": "Você ainda não tem conversas. Mande uma mensagem ou use /new.",
        "session_line": "{marker}{number}. {title} · {count} mensagens · {model}",
        "session_persona": " · 🎭 {persona}",
        "persona_custom": "personalizada",
        "persona_default": "a padrão",
        "persona_current": "*{title}* responde como {label}:\n\n{prompt}\n\n"
        "Escolha uma predefinição abaixo, mande /persona seguido das suas próprias instruções, "
        "ou /persona reset para voltar à padrão.",
        "persona_none": "Sua próxima conversa responde como a padrão:\n\n{prompt}\n\n"
        "Escolha uma predefinição abaixo, ou mande /persona seguido das suas próprias instruções.",
        "persona_set": "*{title}* agora responde como {label}.",
        "persona_reset": "*{title}* voltou à persona padrão.",
        "persona_reset_choice": "↩ Padrão",
        "persona_unknown": "o nome de uma predefinição ({names}), reset, ou instruções com mais "
        "de uma palavra",
        "switched": "Agora em *{title}* ({count} mensagens).",
        "history_header": "*{title}*: últimas {shown} de {total} mensagens",
        "history_empty": "Ainda não há mensagens nesta conversa.",
        "history_summary": "📝 *{heading}*: o modelo recebe isto em vez do texto "
        "original.\n{summary}",
        "history_summary_cut": "(o /export mostra o resumo inteiro)",
        "summary_heading": "Resumo das mensagens 1 a {up_to}",
        "summary_heading_one": "Resumo da mensagem 1",
        "export_summary_note": "O modelo recebe este resumo em vez do texto original.",
        "export_caption": "*{title}* em Markdown ({count} mensagens).",
        "export_details": "Modelo `{model}` · iniciada em {created} · última atividade "
        "{updated} · {count} mensagens",
        "export_persona": "Persona: {persona}",
        "export_saved": "Salvo em {path}",
        "export_files": "Arquivos:",
        "export_file": "- {name} ({media_type}, {size})",
        "export_file_gone": "(não está mais guardado)",
        "no_session": "Você ainda não tem conversas. Mande uma mensagem para começar.",
        "stop_button": "⏹ Parar",
        "stop_done": "⏹ Interrompida. O que já foi escrito fica guardado; /retry responde de novo.",
        "nothing_to_stop": "Nenhuma resposta está sendo escrita agora.",
        "answer_stopped": "⏹ Interrompida.",
        "delete_confirm": "Apagar *{title}* e suas {count} mensagens? Não dá para desfazer.",
        "delete_yes": "Apagar",
        "delete_no": "Cancelar",
        "deleted": "*{title}* foi apagada.",
        "usage_header": "*Seu uso* (dias em UTC)",
        "usage_line": "{period}: {total} tokens ({prompt} de entrada + {completion} de resposta) "
        "· US$ {cost}",
        "usage_today": "Hoje",
        "usage_30_days": "Últimos 30 dias",
        "usage_budget": "Orçamento diário: restam {left} de {budget} tokens hoje.",
        "usage_no_budget": "Sem orçamento diário.",
        "renamed": "Esta conversa agora se chama *{title}*.",
        "rename_usage": "Escreva o novo título depois do comando, por exemplo /rename Viagem a "
        "Lisboa (no máximo {limit} caracteres).",
        "model_current": "Modelo: `{model}`. Troque com /model <id>, por exemplo /model {example}.",
        "model_set": "Modelo `{model}` definido para esta e para as novas conversas.",
        "reply_incomplete": "⚠️ A resposta foi interrompida. Use /retry para perguntar de novo.",
        "unexpected": "Algo deu errado do nosso lado. Tente de novo.",
        "not_text": "Não consigo ler esse tipo de mensagem. Mande texto, uma imagem, um "
        "documento ou uma mensagem de voz.",
        "telegram_file_too_big": "O Telegram só deixa bots baixarem arquivos de até 20 MB, então "
        "não consigo ler este. Mande um arquivo menor, ou só a parte que importa.",
        "file_download_failed": "Não consegui pegar seu arquivo no Telegram. Mande de novo, por "
        "favor.",
        "attachment_download_failed": "Não consegui baixar seu arquivo, então não considerei "
        "esta mensagem. Envie de novo, por favor.",
        "not_allowed": "Desculpe, este bot é privado.",
        "content_hidden": "Não consigo ler isso: aqui o Discord só me mostra mensagens que me "
        "mencionam (este bot não tem a intent Message Content). Mencione-me ou use um comando /.",
        "empty_answer": "O modelo enviou uma resposta vazia. Tente /retry.",
        "not_your_buttons": "Esses botões são de outra pessoa.",
        "previous_session_expired": "📌 Sua conversa anterior expirou após {ttl} sem mensagens, "
        "então esta é uma nova. /sessions lista as que você ainda tem.",
        "context_lost": "📌 As mensagens mais antigas desta conversa não chegam mais ao modelo, "
        "então ele pode não lembrar como ela começou. /new começa uma nova.",
        "context_summarized": "📌 Esta conversa está longa: o modelo agora recebe um resumo das "
        "mensagens mais antigas em vez das palavras delas. /history mostra onde ele começa.",
        "invalid_input": "Esse pedido não é válido.",
        "empty_message": "Sua mensagem está vazia.",
        "message_too_long": "Sua mensagem tem {length} caracteres; o limite é {limit}. "
        "Encurte ou divida a mensagem.",
        "system_prompt_too_long": "Essa persona tem {length} caracteres; o limite é {limit}. "
        "Encurte-a.",
        "too_many_attachments": "Mande no máximo {limit} arquivos por mensagem; esta tem {count}.",
        "heard": "🎤 “{transcript}”",
        "document_cut": "📄 Só o começo de {name} foi lido: o modelo vê no máximo {limit} "
        "caracteres de um documento.",
        "attachments_too_large": "Estes arquivos são grandes demais juntos: {size}, e uma "
        "conversa guarda no máximo {limit} de arquivos. Mande menos ou menores.",
        "unknown_command": "Não conheço {command}. Mande /help para ver o que sei fazer.",
        "invalid_argument": "Valor inválido para {name}: {reason}.",
        "model_cannot_read_images": "`{model}` não lê imagens, então não recebi esta mensagem. "
        "Envie sem a imagem ou troque para um modelo que leia imagens com /model.",
        "model_cannot_read_images_suggest": "`{model}` não lê imagens, então não recebi esta "
        "mensagem. Envie sem a imagem ou troque para um modelo que leia imagens, "
        "por exemplo /model {suggestion}.",
        "invalid_attachment": "Não consigo usar esse anexo.",
        "invalid_attachment_empty": "Esse arquivo está vazio.",
        "invalid_attachment_unknown_type": "Não consigo ler esse tipo de arquivo. Leio imagens "
        "(JPEG, PNG, GIF, WebP), PDFs, arquivos de texto em UTF-8 e áudio (OGG, MP3, M4A, WAV, "
        "WebM, FLAC, AAC).",
        "invalid_attachment_not_an_image": "Esse arquivo não é uma imagem.",
        "invalid_attachment_not_a_document": "Esse arquivo não é um PDF nem um arquivo de texto.",
        "invalid_attachment_damaged": "Esse arquivo está danificado ou incompleto, então não "
        "consigo abri-lo. Tente enviar de novo.",
        "invalid_attachment_too_many_pixels": "Essa imagem é grande demais para eu abrir. "
        "Envie uma versão menor.",
        "invalid_attachment_encrypted": "Esse PDF é protegido por senha. "
        "Envie uma cópia sem a senha.",
        "invalid_attachment_unsupported": "Esse PDF usa uma criptografia ou compressão que não "
        "consigo ler. Tente salvá-lo ou imprimi-lo como um novo PDF.",
        "invalid_attachment_not_text": "Esse arquivo não é texto simples em UTF-8. "
        "Salve-o como texto UTF-8 e envie de novo.",
        "file_too_large": "Esse arquivo tem {size}; o máximo que aceito num arquivo é {limit}.",
        "document_has_no_text": "“{name}” não tem texto que eu consiga ler: pode ser uma "
        "digitalização ou só imagens. Envie o próprio texto, ou as páginas como imagens.",
        "session_not_found": "Essa conversa não existe ou expirou. Veja /sessions.",
        "attachment_gone": "O arquivo {name} não está mais guardado: arquivos mais novos desta "
        "conversa ocuparam o espaço dele.",
        "session_limit_reached": "Você já tem {limit} conversas, o máximo permitido. "
        "Apague uma com /delete para começar outra.",
        "session_limit_pick": "Escolha qual apagar:",
        "not_session_creator": "Só quem começou esta conversa, ou um admin deste chat, pode "
        "renomeá-la, apagá-la ou mudar sua persona.",
        "nothing_to_retry": "Não há mensagem sua para responder de novo aqui.",
        "session_busy": "Ainda estou respondendo sua mensagem anterior. Tente daqui a pouco.",
        "turn_lock_lost": "Esta resposta não foi salva: a conversa seguiu sem ela "
        "(outra mensagem assumiu enquanto eu respondia). Use /retry para responder de novo.",
        "quota_exceeded": "Você atingiu um limite de uso. Tente de novo em {wait}.",
        "rate_limited": "Você está mandando mensagens rápido demais: no máximo {limit} mensagens "
        "em {window}. Tente de novo em {wait}.",
        "daily_budget_exhausted": "Você já usou seus {budget} tokens de hoje. "
        "Seu limite renova à meia-noite UTC, daqui a {wait}.",
        "service_stopping": "Estou reiniciando e não recebi essa mensagem. "
        "Envie de novo em instantes.",
        "turn_stopped": "⏹ Interrompida antes de qualquer resposta. Sua mensagem está guardada: "
        "/retry responde a ela.",
        "turn_interrupted": "Reiniciei antes de terminar esta resposta. "
        "Sua mensagem está salva: use /retry para perguntar de novo.",
        "store_unavailable": "O armazenamento está indisponível no momento. Tente em instantes.",
        "store_full": "O armazenamento está cheio. Apague uma conversa antiga ou tente mais tarde.",
        "store_error": "Falha no armazenamento. Tente de novo.",
        "model_not_configured": "Nenhum modelo de IA configurado: falta OPENROUTER_API_KEY. "
        "Os comandos de sessão continuam funcionando.",
        "model_rejected": "O provedor de IA recusou o pedido ({status}). "
        "Tente outro modelo com /model.",
        "model_rate_limited": "O provedor de IA está ocupado. Tente de novo em {wait}.",
        "model_rate_limited_unknown": "O provedor de IA está ocupado. Tente daqui a um minuto.",
        "model_unavailable": "O modelo de IA está indisponível agora. Tente em instantes.",
        "model_circuit_open": "O modelo de IA continua falhando, então vou deixá-lo descansar "
        "um pouco. Sua mensagem está guardada: tente /retry em {wait}.",
        "model_timeout": "O modelo de IA demorou demais para responder. Tente /retry.",
        "turn_timeout": "A resposta passou de {limit}, então eu a interrompi; ela não foi salva. "
        "Sua mensagem está guardada: use /retry para perguntar de novo.",
        "model_stream_broken": "A resposta foi interrompida. Use /retry para perguntar de novo.",
        "model_empty_answer": "O modelo de IA enviou uma resposta vazia. "
        "Sua mensagem está guardada: tente /retry.",
        "model_error": "O modelo de IA não conseguiu responder. Tente /retry.",
        "transcription_failed": "Não consegui transcrever seu áudio, então nada foi salvo. "
        "Envie de novo ou escreva sua mensagem.",
        "transcription_not_configured": "Não consigo transcrever áudio: nenhum provedor de IA "
        "está configurado (falta OPENROUTER_API_KEY). Nada foi salvo: escreva sua mensagem.",
        "transcription_too_large": "Seu áudio é grande demais para transcrever. "
        "Nada foi salvo: envie uma gravação mais curta.",
        "transcription_too_large_sized": "Seu áudio tem {size}; consigo transcrever no máximo "
        "{limit}. Nada foi salvo: envie uma gravação mais curta.",
        "transcription_unsupported_format": "Não consigo transcrever áudio do tipo {media_type}. "
        "Nada foi salvo: envie áudio OGG, MP3, WAV, M4A, FLAC, WebM ou AAC.",
        "transcription_rejected": "O serviço de transcrição recusou este áudio ({status}). "
        "Nada foi salvo: envie de novo ou escreva sua mensagem.",
        "transcription_rate_limited": "O serviço de transcrição está ocupado. "
        "Nada foi salvo: envie o áudio de novo daqui a um minuto.",
        "transcription_rate_limited_wait": "O serviço de transcrição está ocupado. "
        "Nada foi salvo: envie o áudio de novo em {wait}.",
        "transcription_unavailable": "A transcrição está indisponível agora. "
        "Nada foi salvo: envie o áudio de novo em instantes.",
        "transcription_unavailable_wait": "A transcrição continua falhando, então vou deixá-la "
        "descansar um pouco. Nada foi salvo: envie o áudio de novo em {wait}.",
        "transcription_timeout": "A transcrição do seu áudio demorou demais. "
        "Nada foi salvo: envie de novo ou mande uma gravação mais curta.",
        "transcription_empty": "Não ouvi nenhuma palavra no seu áudio, então nada foi salvo. "
        "Envie de novo ou escreva sua mensagem.",
        "bytes": "{n} B",
        "kilobytes": "{n} kB",
        "megabytes": "{n} MB",
        "seconds": "{n} s",
        "minutes": "{n} min",
        "hours": "{n} h",
        "hours_minutes": "{h} h {m} min",
        "reply_footer": "{model} · {tokens} tokens",
        "goodbye": "Até logo!",
        "prompt_you": "você> ",
        "prompt_assistant": "assistente> ",
        "prompt_choice": "escolha um número (Enter para pular)> ",
    },
}


def normalize_locale(code: str | None) -> str:
    """Platform language codes (`pt`, `pt-br`, `pt_BR`, `en-US`, None) to one we speak."""
    if code and code.replace("_", "-").lower().startswith("pt"):
        return PORTUGUESE
    return ENGLISH


def text(locale: str, key: str, **params: object) -> str:
    template = _TEXTS[normalize_locale(locale)][key]
    return template.format(**params) if params else template


def describe(error: ChatbridgeError, locale: str) -> str:
    """The user-facing sentence for a core error."""
    if isinstance(error, TranscriptionFailed):
        return _describe_transcription_failure(error, locale)
    if isinstance(error, ModelRateLimited):
        if error.retry_after is None:
            return text(locale, "model_rate_limited_unknown")
        wait = text(locale, "seconds", n=max(1, round(error.retry_after)))
        return text(locale, "model_rate_limited", wait=wait)
    if isinstance(error, ModelCannotReadImages) and error.suggestion is not None:
        key = "model_cannot_read_images_suggest"
        return text(locale, key, model=error.model, suggestion=error.suggestion)
    params = dict(error.params)
    if isinstance(error, QuotaExceeded | ModelCircuitOpen):
        params["wait"] = duration(locale, error.retry_after)
    if isinstance(error, RateLimited):
        params["window"] = duration(locale, error.window_seconds, is_exact=True)
    if isinstance(error, TurnTimeout):
        params["limit"] = duration(locale, error.seconds, is_exact=True)
    if isinstance(error, AttachmentsTooLarge | FileTooLarge):
        params["size"] = megabytes(locale, error.size, is_rounded_up=True)
        params["limit"] = megabytes(locale, error.limit)
    catalogue = _TEXTS[normalize_locale(locale)]
    key = error.code
    if isinstance(error, InvalidAttachment):
        key = f"{error.code}_{error.reason}"  # each reason has its own sentence
    template = catalogue.get(key, catalogue.get(error.code, catalogue["unexpected"]))
    return template.format(**params)


def _describe_transcription_failure(error: TranscriptionFailed, locale: str) -> str:
    """The sentence for `error.reason`; `_sized` and `_wait` variants name the sizes and the
    wait when the error knows them."""
    params = dict(error.params)
    key = f"transcription_{error.reason}"
    size, limit = params.get("size"), params.get("limit")
    if isinstance(size, int) and isinstance(limit, int):
        params["size"] = megabytes(locale, size, is_rounded_up=True)
        params["limit"] = megabytes(locale, limit)
        key += "_sized"
    if error.retry_after is not None:
        params["wait"] = duration(locale, error.retry_after)
        key += "_wait"
    catalogue = _TEXTS[normalize_locale(locale)]
    return catalogue.get(key, catalogue["transcription_failed"]).format(**params)


def megabytes(locale: str, size: int, *, is_rounded_up: bool = False) -> str:
    """`25 MB`, `12.4 MB` (`12,4 MB` in Portuguese): bytes in decimal megabytes, to a tenth.

    A size compared to a limit is rounded up, so audio over the limit never reads as equal to it.
    """
    tenths = size / 100_000
    shown = (math.ceil(tenths) if is_rounded_up else math.floor(tenths)) / 10
    number = f"{shown:g}"
    if normalize_locale(locale) == PORTUGUESE:
        number = number.replace(".", ",")
    return text(locale, "megabytes", n=number)


def file_size(locale: str, size: int) -> str:
    """`264 B`, `12.3 kB` (`12,3 kB` in Portuguese), `1.2 MB`: a file's size, decimal units,
    cut (not rounded) to a tenth so that a size never reads as the next unit."""
    if size < 1_000:
        return text(locale, "bytes", n=size)
    if size >= 1_000_000:
        return megabytes(locale, size)
    number = f"{math.floor(size / 100) / 10:g}"
    if normalize_locale(locale) == PORTUGUESE:
        number = number.replace(".", ",")
    return text(locale, "kilobytes", n=number)


def summary_heading(locale: str, up_to: int) -> str:
    """`Summary of messages 1 to 57`: which messages a session's summary stands in for."""
    if up_to == 1:
        return text(locale, "summary_heading_one")
    return text(locale, "summary_heading", up_to=number(locale, up_to))


def notice_text(locale: str, notice: Notice, *, expired_after: int = 0) -> str:
    """The sentence a reply adds for `notice`; `expired_after`: the seconds without messages
    after which the previous session expired (Turn.expired_after)."""
    if notice is Notice.PREVIOUS_SESSION_EXPIRED:
        ttl = duration(locale, expired_after, is_exact=True)
        return text(locale, notice.value, ttl=ttl)
    return text(locale, notice.value)


def duration(locale: str, seconds: float, *, is_exact: bool = False) -> str:
    """`45 s`, `3 min`, `2 h`, `5 h 12 min`.

    A wait is rounded up to whole minutes past the first one, so it is never said shorter than
    it is; an exact duration (a window) uses the largest unit that divides it (`90 s`, `2 min`).
    """
    whole_seconds = max(1, math.ceil(seconds))
    if is_exact:
        for key, unit in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
            if whole_seconds % unit == 0:
                return text(locale, key, n=whole_seconds // unit)
    if whole_seconds < 60:
        return text(locale, "seconds", n=whole_seconds)
    hours, minutes = divmod(math.ceil(whole_seconds / 60), 60)
    if not hours:
        return text(locale, "minutes", n=minutes)
    if not minutes:
        return text(locale, "hours", n=hours)
    return text(locale, "hours_minutes", h=hours, m=minutes)


def help_text(locale: str) -> str:
    descriptions = COMMAND_DESCRIPTIONS[normalize_locale(locale)]
    lines = [text(locale, "help_header")]
    lines += [f"/{name} — {description}" for name, description in descriptions.items()]
    return "\n".join(lines)


def usage_text(locale: str, report: UsageReport) -> str:
    """/usage: today's and the last 30 days' tokens and cost, and the budget left."""
    lines = [text(locale, "usage_header")]
    for period, totals in (("usage_today", report.today), ("usage_30_days", report.last_30_days)):
        lines.append(_usage_line(locale, text(locale, period), totals))
    if report.daily_budget is None or report.budget_left is None:
        lines.append(text(locale, "usage_no_budget"))
    else:
        left, budget = number(locale, report.budget_left), number(locale, report.daily_budget)
        lines.append(text(locale, "usage_budget", left=left, budget=budget))
    return "\n".join(lines)


def _usage_line(locale: str, period: str, totals: UsageTotals) -> str:
    # A turn costs fractions of a cent: up to six decimals, at least two ($0.00, $0.000125).
    cost = f"{totals.cost:.6f}".rstrip("0")
    cost = cost + "0" * max(0, 2 - len(cost.partition(".")[2]))
    if normalize_locale(locale) == PORTUGUESE:
        cost = cost.replace(".", ",")
    return text(
        locale, "usage_line", period=period, total=number(locale, totals.total_tokens),
        prompt=number(locale, totals.prompt_tokens),
        completion=number(locale, totals.completion_tokens), cost=cost,
    )  # fmt: skip


def number(locale: str, value: int) -> str:
    """`12,345` (`12.345` in Portuguese)."""
    shown = f"{value:,}"
    return shown.replace(",", ".") if normalize_locale(locale) == PORTUGUESE else shown
