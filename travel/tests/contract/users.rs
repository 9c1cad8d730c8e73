//! The users service: registration, tokens, reads.

crate::scenarios!(
    registration_answers_the_new_users_id,
    a_taken_login_is_409,
    an_invalid_registration_lists_every_reason,
    a_registration_without_fields_is_400,
    an_oversized_registration_is_413,
    basic_credentials_are_exchanged_for_a_token,
    a_wrong_password_or_no_credentials_is_401,
    auth_check_names_the_tokens_owner,
    auth_check_refuses_a_malformed_token,
    a_user_is_read_by_id,
    an_unknown_user_is_404,
    a_non_integer_user_id_is_400,
    user_search_finds_by_name_prefixes,
    user_search_refuses_short_or_empty_prefixes,
);

mod scenario {
    use reqwest::Method;
    use serde_json::json;

    use crate::app::{ADA, App, Auth, GRACE, body, form, query};

    pub async fn registration_answers_the_new_users_id(app: &App) {
        let ada = app.register(&ADA).await;
        let grace = app.register(&GRACE).await;
        assert_eq!((ada, grace), (1, 2));
    }

    pub async fn a_taken_login_is_409(app: &App) {
        app.register(&ADA).await;
        app.expect(Method::POST, "/user", body(&ADA.form(), Auth::None), 409)
            .await;
    }

    pub async fn an_invalid_registration_lists_every_reason(app: &App) {
        let invalid = form(&[
            ("first_name", "Jo"),
            ("last_name", "Mac Neil"),
            ("email", "nowhere"),
            ("title", "t"),
            ("login", "l"),
            ("password", "p"),
        ]);
        let r = app
            .expect(Method::POST, "/user", body(&invalid, Auth::None), 400)
            .await;
        let reasons = r.json()["errors"].as_array().unwrap().len();
        assert_eq!(reasons, 3, "{}", r.body);
    }

    pub async fn a_registration_without_fields_is_400(app: &App) {
        app.expect(Method::POST, "/user", body("", Auth::None), 400)
            .await;
    }

    pub async fn an_oversized_registration_is_413(app: &App) {
        let huge = format!("first_name={}", "a".repeat(17 * 1024));
        app.expect(Method::POST, "/user", body(&huge, Auth::None), 413)
            .await;
    }

    pub async fn basic_credentials_are_exchanged_for_a_token(app: &App) {
        app.register(&ADA).await;
        let token = app.login(&ADA).await;
        assert_eq!(token.split('.').count(), 3, "{token}");
    }

    pub async fn a_wrong_password_or_no_credentials_is_401(app: &App) {
        app.register(&ADA).await;
        let wrong = Auth::Basic(ADA.login, "wrong");
        app.expect(Method::GET, "/auth", query(&[], wrong), 401)
            .await;
        app.expect(Method::GET, "/auth", query(&[], Auth::None), 401)
            .await;
    }

    pub async fn auth_check_names_the_tokens_owner(app: &App) {
        let (id, token) = app.sign_up(&ADA).await;
        let owner = app
            .expect(
                Method::GET,
                "/auth_check",
                query(&[], Auth::Bearer(&token)),
                200,
            )
            .await
            .json();
        assert_eq!(owner, json!({"id": id, "login": ADA.login}));
    }

    pub async fn auth_check_refuses_a_malformed_token(app: &App) {
        let malformed = Auth::Bearer("a.b.c");
        app.expect(Method::GET, "/auth_check", query(&[], malformed), 401)
            .await;
    }

    pub async fn a_user_is_read_by_id(app: &App) {
        let ada = app.register(&ADA).await.to_string();
        let (_, grace) = app.sign_up(&GRACE).await;
        let user = app
            .expect(
                Method::GET,
                "/user",
                query(&[("id", &ada)], Auth::Bearer(&grace)),
                200,
            )
            .await
            .json();
        assert_eq!(user["login"], ADA.login);
    }

    pub async fn an_unknown_user_is_404(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id", "999999")];
        app.expect(Method::GET, "/user", query(&q, Auth::Bearer(&token)), 404)
            .await;
    }

    pub async fn a_non_integer_user_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id", "12abc")];
        app.expect(Method::GET, "/user", query(&q, Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn user_search_finds_by_name_prefixes(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        app.register(&GRACE).await;
        let q = [("first_name", "Dom"), ("last_name", "Ma"), ("limit", "10")];
        let found = app
            .expect(
                Method::GET,
                "/user/search",
                query(&q, Auth::Bearer(&token)),
                200,
            )
            .await;
        assert_eq!(found.json().as_array().unwrap().len(), 1, "{}", found.body);
    }

    pub async fn user_search_refuses_short_or_empty_prefixes(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let auth = Auth::Bearer(&token);
        let short = [("first_name", "D")];
        app.expect(Method::GET, "/user/search", query(&short, auth), 400)
            .await;
        let empty = [("first_name", ""), ("last_name", ""), ("limit", "0")];
        app.expect(Method::GET, "/user/search", query(&empty, auth), 400)
            .await;
    }
}
