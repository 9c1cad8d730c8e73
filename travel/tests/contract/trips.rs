//! The trips service (the creator becomes a member through parties).

crate::scenarios!(
    a_trip_takes_the_clients_id_or_the_next_free_one,
    a_taken_trip_id_is_409,
    a_trip_id_out_of_range_is_400,
    the_owner_replaces_a_trip,
    only_the_owner_may_replace_a_trip,
    replacing_an_unknown_trip_is_404,
    replacing_without_an_id_is_400,
    a_trip_is_read_by_its_members_only,
    an_unknown_trip_is_404,
    an_empty_trip_id_is_400,
    trips_lists_the_callers_trips,
    trips_refuses_a_limit_above_1000,
    what_needs_parties_answers_503_while_it_is_down,
);

mod scenario {
    use reqwest::Method;
    use travel::Service;

    use crate::app::{ADA, App, Auth, GRACE, TRIP, body, form, query};

    /// [`TRIP`] under another name.
    fn renamed() -> [(&'static str, &'static str); 5] {
        let mut renamed = TRIP;
        renamed[2] = ("name", "magna ac");
        renamed
    }

    pub async fn a_trip_takes_the_clients_id_or_the_next_free_one(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let auth = Auth::Bearer(&token);
        let chosen = app
            .expect(Method::POST, "/trip", body(&form(&TRIP), auth), 200)
            .await
            .json();
        assert_eq!(chosen, 1);
        let assigned = app
            .expect(Method::POST, "/trip", body(&form(&TRIP[1..]), auth), 200)
            .await
            .json();
        assert_eq!(assigned, 2);
    }

    pub async fn a_taken_trip_id_is_409(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        let trip = form(&TRIP);
        app.expect(
            Method::POST,
            "/trip",
            body(&trip, Auth::Bearer(&grace)),
            409,
        )
        .await;
    }

    pub async fn a_trip_id_out_of_range_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let mut zero = TRIP;
        zero[0] = ("id", "0");
        app.expect(
            Method::POST,
            "/trip",
            body(&form(&zero), Auth::Bearer(&token)),
            400,
        )
        .await;
    }

    pub async fn the_owner_replaces_a_trip(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let auth = Auth::Bearer(&token);
        app.create_trip(&token).await;
        app.expect(Method::PUT, "/trip", body(&form(&renamed()), auth), 200)
            .await;
        let trip = app
            .expect(Method::GET, "/trip", query(&[("id", "1")], auth), 200)
            .await
            .json();
        assert_eq!(trip["name"], "magna ac");
    }

    pub async fn only_the_owner_may_replace_a_trip(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        let trip = form(&renamed());
        app.expect(Method::PUT, "/trip", body(&trip, Auth::Bearer(&grace)), 403)
            .await;
    }

    pub async fn replacing_an_unknown_trip_is_404(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let mut missing = renamed();
        missing[0] = ("id", "999999");
        app.expect(
            Method::PUT,
            "/trip",
            body(&form(&missing), Auth::Bearer(&token)),
            404,
        )
        .await;
    }

    pub async fn replacing_without_an_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        app.create_trip(&token).await;
        let no_id = form(&renamed()[1..]);
        app.expect(
            Method::PUT,
            "/trip",
            body(&no_id, Auth::Bearer(&token)),
            400,
        )
        .await;
    }

    pub async fn a_trip_is_read_by_its_members_only(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        let trip = [("id", "1")];
        app.expect(Method::GET, "/trip", query(&trip, Auth::Bearer(&ada)), 200)
            .await;
        app.expect(
            Method::GET,
            "/trip",
            query(&trip, Auth::Bearer(&grace)),
            403,
        )
        .await;
        let join = query(&[("id_trip", "1")], Auth::Bearer(&grace));
        app.expect(Method::POST, "/party/join", join, 200).await;
        app.expect(
            Method::GET,
            "/trip",
            query(&trip, Auth::Bearer(&grace)),
            200,
        )
        .await;
    }

    pub async fn an_unknown_trip_is_404(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id", "999999")];
        app.expect(Method::GET, "/trip", query(&q, Auth::Bearer(&token)), 404)
            .await;
    }

    pub async fn an_empty_trip_id_is_400(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("id", "")];
        app.expect(Method::GET, "/trip", query(&q, Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn trips_lists_the_callers_trips(app: &App) {
        let (_, ada) = app.sign_up(&ADA).await;
        let (_, grace) = app.sign_up(&GRACE).await;
        app.create_trip(&ada).await;
        let another = form(&TRIP[1..]);
        app.expect(
            Method::POST,
            "/trip",
            body(&another, Auth::Bearer(&ada)),
            200,
        )
        .await;
        app.expect(
            Method::POST,
            "/trip",
            body(&another, Auth::Bearer(&grace)),
            200,
        )
        .await;
        let mine = app
            .expect(Method::GET, "/trips", query(&[], Auth::Bearer(&ada)), 200)
            .await;
        assert_eq!(mine.json().as_array().unwrap().len(), 2, "{}", mine.body);
    }

    pub async fn trips_refuses_a_limit_above_1000(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let q = [("limit", "1001")];
        app.expect(Method::GET, "/trips", query(&q, Auth::Bearer(&token)), 400)
            .await;
    }

    pub async fn what_needs_parties_answers_503_while_it_is_down(app: &App) {
        let (_, token) = app.sign_up(&ADA).await;
        let auth = Auth::Bearer(&token);
        app.create_trip(&token).await;
        app.stop(Service::Parties).await;
        let mut third = TRIP;
        third[0] = ("id", "3");
        app.expect(Method::POST, "/trip", body(&form(&third), auth), 503)
            .await;
        app.expect(Method::GET, "/trip", query(&[("id", "1")], auth), 503)
            .await;
        app.expect(Method::GET, "/trips", query(&[], auth), 503)
            .await;
    }
}
