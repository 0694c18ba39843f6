//! Chats and messages against a real PostgreSQL: ownership, ordering, search, edits, and answers
//! that a dead server left behind.

use domain::Database;
use domain::chats::{self, Role, Status};
use domain::users::{self, Identity, Role as UserRole, RoleDecision};
use sqlx::PgPool;
use uuid::Uuid;

async fn user(db: &Database, subject: &str) -> Uuid {
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: subject.into(),
        name: subject.into(),
        ..Identity::default()
    };
    users::sign_in(db, &identity, RoleDecision::Fixed(UserRole::User))
        .await
        .unwrap()
        .id
}

/// Reads the conversation and asks in it, as a send does.
async fn send(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
    text: &str,
    from_position: Option<i32>,
) -> domain::Result<Option<chats::Asked>> {
    let Some(conversation) = chats::conversation(db, user_id, chat_id, from_position).await? else {
        return Ok(None);
    };
    chats::ask(db, user_id, &conversation, text, "fake/m").await
}

async fn title(db: &Database, user_id: Uuid, chat_id: Uuid) -> String {
    chats::get(db, user_id, chat_id)
        .await
        .unwrap()
        .unwrap()
        .title
}

/// A database with Alice and a new chat of hers.
async fn alices_chat(pool: PgPool) -> (Database, Uuid, chats::Chat) {
    let db = Database::from_pool(pool);
    let alice = user(&db, "alice").await;
    let chat = chats::create(&db, alice, None).await.unwrap();
    (db, alice, chat)
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_first_message_names_the_chat_and_answers_stream_into_place(pool: PgPool) {
    let (db, alice, chat) = alices_chat(pool).await;
    assert_eq!(chat.title, "New chat");

    let asked = send(&db, alice, chat.id, "Plan a trip to Lisbon", None)
        .await
        .unwrap()
        .unwrap();
    let (question, answer) = (asked.question, asked.answer);
    assert_eq!((question.position, question.role), (0, Role::User));
    assert_eq!(
        (answer.position, answer.role, answer.status),
        (1, Role::Assistant, Status::Streaming)
    );
    assert_eq!(title(&db, alice, chat.id).await, "Plan a trip to Lisbon");

    chats::flush(&db, answer.id, "Day one").await.unwrap();
    chats::finish(&db, answer.id, "Day one: Alfama.", Status::Complete, None)
        .await
        .unwrap();
    let messages = chats::messages(&db, alice, chat.id).await.unwrap().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].content, "Day one: Alfama.");
    assert_eq!(messages[1].status, Status::Complete);

    // A second question does not rename the chat.
    send(&db, alice, chat.id, "And day two?", None)
        .await
        .unwrap();
    assert_eq!(title(&db, alice, chat.id).await, "Plan a trip to Lisbon");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn editing_an_earlier_message_replaces_what_came_after(pool: PgPool) {
    let (db, alice, chat) = alices_chat(pool).await;
    for text in ["one", "two", "three"] {
        send(&db, alice, chat.id, text, None).await.unwrap();
    }
    let before_edit = chats::conversation(&db, alice, chat.id, Some(2))
        .await
        .unwrap()
        .unwrap();
    let history: Vec<(i32, &str)> = before_edit
        .history
        .iter()
        .map(|m| (m.position, m.content.as_str()))
        .collect();
    assert_eq!(history, [(0, "one"), (1, "")], "what the edit follows");
    let asked = chats::ask(&db, alice, &before_edit, "two, edited", "fake/m")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((asked.question.position, asked.answer.position), (2, 3));
    let texts: Vec<(i32, String)> = chats::messages(&db, alice, chat.id)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .filter(|m| m.role == Role::User)
        .map(|m| (m.position, m.content))
        .collect();
    assert_eq!(
        texts,
        [(0, "one".to_owned()), (2, "two, edited".to_owned())]
    );
}

/// Two tabs or servers sending in one chat from the same reading of it: one is stored, the other
/// meets its position and is refused as busy; so is a send from a reading that is out of date.
/// Nothing is half-written.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn sends_from_the_same_reading_never_share_a_position(pool: PgPool) {
    let (db, alice, chat) = alices_chat(pool).await;
    for round in 0..10 {
        let read = chats::conversation(&db, alice, chat.id, None)
            .await
            .unwrap()
            .unwrap();
        let (a, b) = tokio::join!(
            chats::ask(&db, alice, &read, "from one tab", "fake/m"),
            chats::ask(&db, alice, &read, "from another", "fake/m"),
        );
        let refused: Vec<String> = [a, b]
            .into_iter()
            .filter_map(|outcome| outcome.err().map(|e| e.to_string()))
            .collect();
        assert_eq!(refused, [chats::BUSY], "round {round}");
        let stale = chats::ask(&db, alice, &read, "late", "fake/m").await;
        assert_eq!(stale.unwrap_err().to_string(), chats::BUSY);
    }
    let messages = chats::messages(&db, alice, chat.id).await.unwrap().unwrap();
    assert_eq!(messages.len(), 20);
    let positions: Vec<i32> = messages.iter().map(|m| m.position).collect();
    assert_eq!(positions, (0..20).collect::<Vec<_>>());
    assert!(
        messages
            .chunks(2)
            .all(|pair| pair[0].role == Role::User && pair[1].role == Role::Assistant),
        "every question has its answer"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn another_persons_chat_does_not_exist(pool: PgPool) {
    let db = Database::from_pool(pool);
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    let chat = chats::create(&db, alice, None).await.unwrap();
    send(&db, alice, chat.id, "secret plans", None)
        .await
        .unwrap();

    assert!(chats::get(&db, bob, chat.id).await.unwrap().is_none());
    assert!(chats::messages(&db, bob, chat.id).await.unwrap().is_none());
    assert!(chats::list(&db, bob, None).await.unwrap().is_empty());
    assert!(
        chats::list(&db, bob, Some("secret"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(send(&db, bob, chat.id, "hi", None).await.unwrap().is_none());
    assert!(!chats::rename(&db, bob, chat.id, "mine now").await.unwrap());
    assert!(
        !chats::set_model(&db, bob, chat.id, Some("x/y"))
            .await
            .unwrap()
    );
    assert!(!chats::delete(&db, bob, chat.id).await.unwrap());
    assert_eq!(
        chats::list(&db, alice, None).await.unwrap().len(),
        1,
        "still there"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn chats_are_listed_newest_first_searched_renamed_and_deleted(pool: PgPool) {
    let db = Database::from_pool(pool);
    let alice = user(&db, "alice").await;
    let older = chats::create(&db, alice, None).await.unwrap();
    send(&db, alice, older.id, "Recipe for pastéis de nata", None)
        .await
        .unwrap();
    let newer = chats::create(&db, alice, None).await.unwrap();
    send(&db, alice, newer.id, "Rust lifetimes", None)
        .await
        .unwrap();

    let ids: Vec<Uuid> = chats::list(&db, alice, None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [newer.id, older.id]);
    // By title, and by message text.
    let found = chats::list(&db, alice, Some("lifetimes")).await.unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [newer.id]);
    let answer = send(&db, alice, older.id, "How long to bake?", None)
        .await
        .unwrap()
        .unwrap()
        .answer;
    chats::finish(
        &db,
        answer.id,
        "Bake at 250 degrees for twelve minutes",
        Status::Complete,
        None,
    )
    .await
    .unwrap();
    let found = chats::list(&db, alice, Some("twelve minutes"))
        .await
        .unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [older.id]);

    assert!(
        chats::rename(&db, alice, older.id, "  Baking  ")
            .await
            .unwrap()
    );
    assert_eq!(title(&db, alice, older.id).await, "Baking");
    assert!(matches!(
        chats::rename(&db, alice, older.id, " ").await,
        Err(domain::Error::Invalid(_))
    ));
    assert!(chats::delete(&db, alice, older.id).await.unwrap());
    assert!(
        chats::messages(&db, alice, older.id)
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_answer_a_dead_server_left_streaming_shows_as_interrupted(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice").await;
    let chat = chats::create(&db, alice, None).await.unwrap();
    let answer = send(&db, alice, chat.id, "Hi", None)
        .await
        .unwrap()
        .unwrap()
        .answer;
    chats::flush(&db, answer.id, "Hello, wor").await.unwrap();
    let status = |db: Database| async move {
        chats::messages(&db, alice, chat.id).await.unwrap().unwrap()[1].clone()
    };
    assert_eq!(
        status(db.clone()).await.status,
        Status::Streaming,
        "alive while it is flushed"
    );

    sqlx::query("UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = $1")
        .bind(answer.id)
        .execute(&pool)
        .await
        .unwrap();
    let message = status(db.clone()).await;
    assert_eq!(message.status, Status::Interrupted);
    assert_eq!(message.content, "Hello, wor", "what had streamed is kept");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_empty_message_is_refused(pool: PgPool) {
    let (db, alice, chat) = alices_chat(pool).await;
    assert!(matches!(
        send(&db, alice, chat.id, "  \n ", None).await,
        Err(domain::Error::Invalid(_))
    ));
}
